#!/usr/bin/env python3
"""Records extra detection cases from real MXNet 1.9.1 (inputs, symbol, MXNet outputs) into
tests/mxnet/recorded/mxnet/ops, for compare_onnx.py --shared tests/mxnet/recorded.
usage: MXNET_VENV/bin/python tests/mxnet/record_extra.py"""
import mxnet as mx, numpy as np, json, os, sys
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'recorded', 'mxnet', 'ops')
rng = np.random.default_rng(0)
def save(name, sym, inputs):
    d = os.path.join(OUT, name); os.makedirs(d, exist_ok=True)
    sym.save(os.path.join(d, 'model-symbol.json'))
    exe = sym.bind(mx.cpu(), {k: mx.nd.array(v) for k, v in inputs.items()})
    outs = exe.forward(is_train=False)
    meta = {"inputs": [], "outputs": []}
    for i, (k, v) in enumerate(inputs.items()):
        np.save(os.path.join(d, f'input_{i}.npy'), v.astype(np.float32))
        meta["inputs"].append({"name": k, "shape": list(v.shape), "dtype": "float32", "file": f'input_{i}.npy'})
    for i, (n, o) in enumerate(zip(sym.list_outputs(), outs)):
        np.save(os.path.join(d, f'output_{i}.npy'), o.asnumpy())
        meta["outputs"].append({"name": n, "shape": list(o.shape), "file": f'output_{i}.npy'})
    json.dump(meta, open(os.path.join(d, 'meta.json'), 'w'))
cls = mx.sym.var('cls_prob'); bb = mx.sym.var('bbox_pred'); im = mx.sym.var('im_info')
B, A, H, W = 2, 6, 5, 4
inp = {'cls_prob': rng.random((B, 2*A, H, W)).astype(np.float32), 'bbox_pred': (rng.standard_normal((B, 4*A, H, W))*0.3).astype(np.float32),
       'im_info': np.array([[70, 60, 1.0], [50, 64, 0.5]], np.float32)}
save('_contrib_MultiProposal__batch2', mx.sym.contrib.MultiProposal(cls, bb, im, scales=(1, 2), ratios=(0.5, 1, 2), feature_stride=16, rpn_pre_nms_top_n=40, rpn_post_nms_top_n=12, threshold=0.6, rpn_min_size=8, output_score=True, name='op0'), inp)
inp1 = {k: v[:1] for k, v in inp.items()}
save('_contrib_Proposal__iou_loss_all', mx.sym.contrib.Proposal(cls, bb, im, scales=(1, 2), ratios=(0.5, 1, 2), feature_stride=16, rpn_pre_nms_top_n=-1, rpn_post_nms_top_n=50, threshold=0.5, rpn_min_size=4, iou_loss=True, name='op0'), inp1)
c2 = mx.sym.var('c'); l2 = mx.sym.var('l'); a2 = mx.sym.var('a')
N = 40
p = rng.random((2, 4, N)).astype(np.float32); p = p / p.sum(1, keepdims=True)
p[:, :, 5] = p[:, :, 6]  # a tie
anc = np.sort(rng.random((1, N, 2, 2)), axis=2).transpose(0, 1, 3, 2).reshape(1, N, 4).astype(np.float32)
save('_contrib_MultiBoxDetection__tie_topk_batch2', mx.sym.contrib.MultiBoxDetection(c2, l2, a2, threshold=0.2, nms_threshold=0.45, nms_topk=10, clip=True, name='op0'),
     {'c': p, 'l': (rng.standard_normal((2, N*4))*0.2).astype(np.float32), 'a': anc})
