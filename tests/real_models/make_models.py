#!/usr/bin/env python3
"""Export real PyTorch models to ONNX with random weights and record onnxruntime's outputs.

Run with the torch venv (not in CI):
    /work/cache/torch-venv/bin/python tests/real_models/make_models.py [--out DIR] [--data DIR] [NAME ...]

For each model NAME this writes into --out (default /work/cache/real-models):
    NAME.onnx             the export (torch.onnx.export: legacy TorchScript exporter at opset 17, or a variant below)
    NAME.inputs.npz       fixed random inputs, keyed by graph input name
    NAME.ort.npz          onnxruntime's outputs on those inputs, keyed by graph output name
    NAME.dyn.*.npz        the same at other sizes along the dynamic axes (batch 3, sequences +3), where there are some
Models whose .onnx is under --small-limit bytes are also copied into --data (tests/real_models/data), which is
checked in and run by scripts/test.sh through check.py (onnxruntime is not needed there).
Weights are random (torch.manual_seed); nothing is downloaded.
"""

import argparse
import inspect
import os
import shutil
import sys
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------- models
# Each builder returns (module, example_args: tuple, input_names, output_names, dynamic_axes, feeds: dict name->array).


def _img(n, c, h, w, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g)


class TinyCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2),
            nn.BatchNorm2d(16),
            nn.Hardswish(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16),
            nn.Sigmoid(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return torch.softmax(self.fc(torch.flatten(self.features(x), 1)), dim=1)


def _randomize_bn(model):
    # Fresh BatchNorm layers hold mean 0 / var 1; random statistics exercise the folding of real exports.
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
    return model


def tiny_cnn():
    m = _randomize_bn(TinyCnn()).eval()
    x = _img(2, 3, 32, 32)
    return m, (x,), ["input"], ["probs"], {"input": {0: "batch"}, "probs": {0: "batch"}}


class RnnHead(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(input_size=16, hidden_size=24, num_layers=2, bidirectional=True, batch_first=True)

    def forward(self, x):
        out, _ = self.rnn(x)
        return out


class RnnWithState(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(input_size=16, hidden_size=24, num_layers=2, bidirectional=True, batch_first=True)

    def forward(self, x, h0):
        out, hn = self.rnn(x, h0)
        return out, hn


def lstm():
    m = RnnHead(nn.LSTM).eval()
    x = torch.randn(3, 7, 16, generator=torch.Generator().manual_seed(2))
    return m, (x,), ["x"], ["y"], {"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}}


def gru():
    m = RnnWithState(nn.GRU).eval()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 7, 16, generator=g)
    h0 = torch.randn(4, 3, 24, generator=g)
    dyn = {"x": {0: "batch", 1: "seq"}, "h0": {1: "batch"}, "y": {0: "batch", 1: "seq"}, "hn": {1: "batch"}}
    return m, (x, h0), ["x", "h0"], ["y", "hn"], dyn


class HfWrapper(nn.Module):
    """Calls a transformers model with keyword inputs and returns plain tensors."""

    def __init__(self, model, keys, pick):
        super().__init__()
        self.model = model
        self.keys = keys
        self.pick = pick

    def forward(self, *args):
        out = self.model(**dict(zip(self.keys, args)), return_dict=True)
        return tuple(out[k] for k in self.pick)


def _ids(batch, seq, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=g)


def _mask(batch, seq):
    m = torch.ones(batch, seq, dtype=torch.long)
    m[0, seq - 2 :] = 0  # one padded row exercises the mask arithmetic
    return m


def bert_tiny():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, attn_implementation="eager")
    m = HfWrapper(BertModel(cfg).eval(), ["input_ids", "attention_mask", "token_type_ids"],
                  ["last_hidden_state", "pooler_output"]).eval()
    ids = _ids(2, 12, 128, 4)
    tt = torch.zeros_like(ids)
    tt[:, 6:] = 1
    dyn = {k: {0: "batch", 1: "seq"} for k in ["input_ids", "attention_mask", "token_type_ids", "last_hidden_state"]}
    dyn["pooler_output"] = {0: "batch"}
    return (m, (ids, _mask(2, 12), tt), ["input_ids", "attention_mask", "token_type_ids"],
            ["last_hidden_state", "pooler_output"], dyn)


def gpt2_tiny():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=128, n_positions=64, n_embd=32, n_layer=2, n_head=4, use_cache=False,
                     attn_implementation="eager")
    m = HfWrapper(GPT2LMHeadModel(cfg).eval(), ["input_ids", "attention_mask"], ["logits"]).eval()
    ids = _ids(2, 10, 128, 5)
    dyn = {k: {0: "batch", 1: "seq"} for k in ["input_ids", "attention_mask", "logits"]}
    return m, (ids, _mask(2, 10)), ["input_ids", "attention_mask"], ["logits"], dyn


def t5_tiny():
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, relative_attention_max_distance=20, use_cache=False,
                   decoder_start_token_id=0, pad_token_id=0, attn_implementation="eager")
    m = HfWrapper(T5ForConditionalGeneration(cfg).eval(), ["input_ids", "attention_mask", "decoder_input_ids"],
                  ["logits"]).eval()
    ids = _ids(2, 11, 128, 6)
    dec = _ids(2, 5, 128, 7)
    dyn = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
           "decoder_input_ids": {0: "batch", 1: "dec_seq"}, "logits": {0: "batch", 1: "dec_seq"}}
    return m, (ids, _mask(2, 11), dec), ["input_ids", "attention_mask", "decoder_input_ids"], ["logits"], dyn


def llama_tiny():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, use_cache=False,
                      rms_norm_eps=1e-5, attn_implementation="eager")
    m = HfWrapper(LlamaForCausalLM(cfg).eval(), ["input_ids", "attention_mask"], ["logits"]).eval()
    ids = _ids(2, 9, 128, 8)
    dyn = {k: {0: "batch", 1: "seq"} for k in ["input_ids", "attention_mask", "logits"]}
    return m, (ids, _mask(2, 9)), ["input_ids", "attention_mask"], ["logits"], dyn


def whisper_enc_tiny():
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig(num_mel_bins=16, d_model=32, encoder_layers=2, encoder_attention_heads=4,
                        encoder_ffn_dim=64, max_source_positions=50, attn_implementation="eager")
    enc = WhisperEncoder(cfg).eval()
    m = HfWrapper(enc, ["input_features"], ["last_hidden_state"]).eval()
    # The encoder needs exactly 2 * max_source_positions frames.
    feats = torch.randn(2, 16, 100, generator=torch.Generator().manual_seed(9))
    return m, (feats,), ["input_features"], ["last_hidden_state"], {"input_features": {0: "batch"},
                                                                    "last_hidden_state": {0: "batch"}}


def vit_tiny():
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    m = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
                          num_classes=10).eval()
    nn.init.normal_(m.heads.head.weight, std=0.2)  # torchvision zero-initializes the head: outputs would be 0
    return m, (_img(2, 3, 32, 32),), ["images"], ["logits"], {"images": {0: "batch"}, "logits": {0: "batch"}}


def _tv_classifier(name, size=224, batch=1):
    def build():
        import torchvision.models as tvm

        m = _randomize_bn(getattr(tvm, name)(weights=None)).eval()
        for mod in m.modules():  # e.g. ViT zero-initializes its head; all-zero logits would compare nothing
            if isinstance(mod, nn.Linear) and not mod.weight.any():
                nn.init.normal_(mod.weight, std=0.05)
        return m, (_img(batch, 3, size, size),), ["images"], ["logits"], {"images": {0: "batch"},
                                                                         "logits": {0: "batch"}}

    return build


class DetWrapper(nn.Module):
    """torchvision detectors take a list of images and return a list of dicts; export one image as a tensor."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model([x[0]])[0]
        return out["boxes"], out["scores"], out["labels"]


def _tv_detector(name, size, **kw):
    def build():
        import torchvision.models.detection as tvd

        m = getattr(tvd, name)(weights=None, weights_backbone=None, **kw)
        m = _randomize_bn(m).eval()
        # Random weights score everything near the prior; keep a low threshold so there are boxes to compare.
        if hasattr(m, "roi_heads"):
            m.roi_heads.score_thresh = 0.0
        if hasattr(m, "score_thresh"):
            m.score_thresh = 0.0
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(11))
        return DetWrapper(m).eval(), (x,), ["image"], ["boxes", "scores", "labels"], None

    return build


class SegWrapper(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def _tv_segmenter(name, size):
    def build():
        import torchvision.models.segmentation as tvs

        kw = {"aux_loss": False} if name != "lraspp_mobilenet_v3_large" else {}
        m = _randomize_bn(getattr(tvs, name)(weights=None, weights_backbone=None, num_classes=21, **kw)).eval()
        return SegWrapper(m).eval(), (_img(1, 3, size, size),), ["images"], ["out"], {"images": {0: "batch"},
                                                                                    "out": {0: "batch"}}

    return build


def _hf(config_cls, model_cls, cfg, inputs, pick, seq=10, batch=2, eager=True):
    """A transformers model from a small config. inputs: names among input_ids, attention_mask, token_type_ids,
    decoder_input_ids, pixel_values:CxHxW, input_values:T (raw audio)."""

    def build():
        import transformers

        kw = dict(cfg)
        if eager:
            kw["attn_implementation"] = "eager"
        model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kw)).eval()
        args, dyn = [], {}
        for i, name in enumerate(inputs):
            key, _, spec = name.partition(":")
            if key in ("input_ids", "decoder_input_ids"):
                args.append(_ids(batch, seq if key == "input_ids" else 5, kw.get("vocab_size", 128), 20 + i))
                dyn[key] = {0: "batch", 1: "seq" if key == "input_ids" else "dec_seq"}
            elif key == "attention_mask":
                args.append(_mask(batch, seq))
                dyn[key] = {0: "batch", 1: "seq"}
            elif key == "token_type_ids":
                args.append(torch.zeros(batch, seq, dtype=torch.long))
                dyn[key] = {0: "batch", 1: "seq"}
            elif key == "pixel_values":
                c, h, w = (int(v) for v in spec.split("x"))
                args.append(_img(batch, c, h, w, seed=20 + i))
                dyn[key] = {0: "batch"}
            elif key == "input_values":
                args.append(torch.randn(batch, int(spec), generator=torch.Generator().manual_seed(20 + i)))
                dyn[key] = {0: "batch"}
        keys = [n.partition(":")[0] for n in inputs]
        return HfWrapper(model, keys, pick).eval(), tuple(args), keys, list(pick), dyn

    return build


_TINY_ENC = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=64)
_TINY_DEC = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=80,
                 max_position_embeddings=128, use_cache=False)

EXTRA = {
    # torchvision classifiers at small input sizes (the reference runtime is slow; weights are full size).
    "squeezenet1_0": _tv_classifier("squeezenet1_0", 96),
    "shufflenet_v2_x0_5": _tv_classifier("shufflenet_v2_x0_5", 96),
    "densenet121": _tv_classifier("densenet121", 64),
    "googlenet": _tv_classifier("googlenet", 96),
    "mnasnet0_5": _tv_classifier("mnasnet0_5", 96),
    "regnet_y_400mf": _tv_classifier("regnet_y_400mf", 96),
    "convnext_tiny": _tv_classifier("convnext_tiny", 64),
    "swin_t": _tv_classifier("swin_t", 64),
    "maxvit_t": _tv_classifier("maxvit_t", 224),
    # transformers architectures from tiny configs.
    "distilbert_tiny": _hf("DistilBertConfig", "DistilBertModel",
                           dict(vocab_size=128, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                max_position_embeddings=64), ["input_ids", "attention_mask"], ["last_hidden_state"]),
    "roberta_tiny": _hf("RobertaConfig", "RobertaModel", dict(_TINY_ENC, pad_token_id=1),
                        ["input_ids", "attention_mask"], ["last_hidden_state"]),
    "albert_tiny": _hf("AlbertConfig", "AlbertModel", dict(_TINY_ENC, embedding_size=16),
                       ["input_ids", "attention_mask"], ["last_hidden_state"]),
    "electra_tiny": _hf("ElectraConfig", "ElectraModel", dict(_TINY_ENC, embedding_size=16),
                        ["input_ids", "attention_mask"], ["last_hidden_state"]),
    "deberta_v2_tiny": _hf("DebertaV2Config", "DebertaV2Model",
                           dict(_TINY_ENC, relative_attention=True, position_buckets=16, max_relative_positions=32,
                                pos_att_type=["p2c", "c2p"]), ["input_ids", "attention_mask"],
                           ["last_hidden_state"], eager=False),
    "bart_tiny": _hf("BartConfig", "BartForConditionalGeneration",
                     dict(vocab_size=128, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                          decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                          max_position_embeddings=64, use_cache=False),
                     ["input_ids", "attention_mask", "decoder_input_ids"], ["logits"]),
    "mistral_tiny": _hf("MistralConfig", "MistralForCausalLM", dict(_TINY_DEC, num_key_value_heads=2),
                        ["input_ids", "attention_mask"], ["logits"]),
    "qwen2_tiny": _hf("Qwen2Config", "Qwen2ForCausalLM", dict(_TINY_DEC, num_key_value_heads=2),
                      ["input_ids", "attention_mask"], ["logits"]),
    "phi_tiny": _hf("PhiConfig", "PhiForCausalLM", dict(_TINY_DEC, partial_rotary_factor=0.5),
                    ["input_ids", "attention_mask"], ["logits"]),
    "gpt_neox_tiny": _hf("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(_TINY_DEC, rotary_pct=0.25),
                         ["input_ids", "attention_mask"], ["logits"]),
    "bloom_tiny": _hf("BloomConfig", "BloomForCausalLM",
                      dict(vocab_size=128, hidden_size=32, n_layer=2, n_head=4, use_cache=False),
                      ["input_ids", "attention_mask"], ["logits"]),
    "falcon_tiny": _hf("FalconConfig", "FalconForCausalLM",
                       dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            use_cache=False, alibi=False, new_decoder_architecture=False, multi_query=True),
                       ["input_ids", "attention_mask"], ["logits"]),
    "gemma_tiny": _hf("GemmaConfig", "GemmaForCausalLM", dict(_TINY_DEC, num_key_value_heads=1, head_dim=8),
                      ["input_ids", "attention_mask"], ["logits"]),
    "wav2vec2_tiny": _hf("Wav2Vec2Config", "Wav2Vec2Model",
                         dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                              conv_dim=(32, 32, 32), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
                              num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                              feat_extract_norm="group", do_stable_layer_norm=False),
                         ["input_values:1600"], ["last_hidden_state"]),
    "clip_vision_tiny": _hf("CLIPVisionConfig", "CLIPVisionModel",
                            dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 image_size=32, patch_size=8), ["pixel_values:3x32x32"],
                            ["last_hidden_state", "pooler_output"]),
    "swin_hf_tiny": _hf("SwinConfig", "SwinModel",
                        dict(image_size=32, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                             window_size=4), ["pixel_values:3x32x32"], ["last_hidden_state"]),
    "segformer_tiny": _hf("SegformerConfig", "SegformerForSemanticSegmentation",
                          dict(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32],
                               patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
                               decoder_hidden_size=32, num_labels=5), ["pixel_values:3x64x64"], ["logits"]),
    "maskrcnn_resnet50_fpn": _tv_detector("maskrcnn_resnet50_fpn", 160, min_size=160, max_size=160),
    "fcos_resnet50_fpn": _tv_detector("fcos_resnet50_fpn", 160, min_size=160, max_size=160),
}

MODELS = {
    "tiny_cnn": tiny_cnn,
    "lstm": lstm,
    "gru": gru,
    "bert_tiny": bert_tiny,
    "gpt2_tiny": gpt2_tiny,
    "t5_tiny": t5_tiny,
    "llama_tiny": llama_tiny,
    "whisper_enc_tiny": whisper_enc_tiny,
    "vit_tiny": vit_tiny,
    "resnet18": _tv_classifier("resnet18"),
    "mobilenet_v3_small": _tv_classifier("mobilenet_v3_small"),
    "efficientnet_b0": _tv_classifier("efficientnet_b0"),
    "vit_b_16": _tv_classifier("vit_b_16"),
    "fasterrcnn_mobilenet_v3_large_320_fpn": _tv_detector("fasterrcnn_mobilenet_v3_large_320_fpn", 320),
    "ssdlite320_mobilenet_v3_large": _tv_detector("ssdlite320_mobilenet_v3_large", 320),
    # ResNet-50 backbones at small sizes: the reference runtime runs ~50 MFLOP/s on a shared core.
    "retinanet_resnet50_fpn": _tv_detector("retinanet_resnet50_fpn", 160, min_size=160, max_size=160),
    "fcn_resnet50": _tv_segmenter("fcn_resnet50", 96),
    "deeplabv3_mobilenet_v3_large": _tv_segmenter("deeplabv3_mobilenet_v3_large", 224),
    "lraspp_mobilenet_v3_large": _tv_segmenter("lraspp_mobilenet_v3_large", 224),
    **EXTRA,
}

# Variants: NAME_dynamo uses the torch.export-based exporter (its own op patterns, opset 18+);
# NAME_opsetK the legacy exporter at opset K (older op forms: attribute axes, Upsample-era Resize...).
DEFAULT = list(MODELS) + ["tiny_cnn_dynamo", "bert_tiny_dynamo", "gpt2_tiny_dynamo", "llama_tiny_dynamo",
                          "t5_tiny_dynamo", "whisper_enc_tiny_dynamo", "lstm_dynamo", "vit_tiny_dynamo",
                          "bert_tiny_opset11", "tiny_cnn_opset9", "gru_opset11", "llama_tiny_opset20",
                          "lraspp_mobilenet_v3_large_opset11", "bert_tiny_extdata", "tiny_cnn_fp16", "bert_tiny_fp16",
                          "gru_fp16", "llama_tiny_fp16", "bert_tiny_stale", "llama_tiny_stale", "tiny_cnn_stale"]

# Small, but near-duplicates of checked-in cases: kept in --out only, so tests/real_models/data stays under 8 MB.
NOT_CHECKED_IN = {"t5_tiny_dynamo", "llama_tiny_opset20", "vit_tiny_dynamo", "gpt2_tiny_dynamo", "bert_tiny_fp16",
                  "whisper_enc_tiny_dynamo", "gru_fp16", "gpt2_tiny_stale"}


def split_variant(name):
    """(base model, options) for a model name with optional suffixes: _dynamo (torch.export-based exporter),
    _extdata (weights in NAME.onnx.data beside the model), _fp16 (weights and float inputs in float16),
    _opsetK (legacy exporter at opset K; 17 by default), _stale (value_info for every intermediate value, inferred
    at the traced sizes, as older exporters wrote it: over-specific for the .dyn run)."""
    opts = {"dynamo": False, "extdata": False, "fp16": False, "stale": False, "opset": 17}
    while True:
        for flag in ("dynamo", "extdata", "fp16", "stale"):
            if name.endswith("_" + flag):
                opts[flag], name = True, name[: -len(flag) - 1]
                break
        else:
            base, sep, k = name.rpartition("_opset")
            if not (sep and k.isdigit()):
                return name, opts
            opts["opset"], name = int(k), base


# ---------------------------------------------------------------- export + record


def record(out_dir, stem, feeds, outputs):
    for kind, arrays in (("inputs", feeds), ("ort", outputs)):
        final = os.path.join(out_dir, f"{stem}.{kind}.npz")
        with open(final + ".tmp", "wb") as f:
            np.savez(f, **arrays)
        os.replace(final + ".tmp", final)


def resized_feeds(feeds, dyn):
    """The same inputs at other sizes along their dynamic axes (batch 3, other axes +3), made by wrapping the
    recorded values around, so token ids and masks stay valid."""
    sizes = {}
    for n, a in feeds.items():
        for ax, sym in dyn.get(n, {}).items():
            sizes.setdefault(sym, 3 if sym == "batch" else a.shape[ax] + 3)
    out = {}
    for n, a in feeds.items():
        for ax, sym in dyn.get(n, {}).items():
            a = np.take(a, np.arange(sizes[sym]), axis=ax, mode="wrap")
        out[n] = np.ascontiguousarray(a)
    return out


def add_stale_value_info(path, feeds):
    """Writes into the model the shapes onnx infers with its inputs fixed at the traced sizes. onnxruntime trusts
    such annotations and fails at other sizes, so the outputs recorded are those of the clean export."""
    import copy

    import onnx

    model = onnx.load(path)
    fixed = copy.deepcopy(model)
    for i in fixed.graph.input:
        if i.name in feeds:
            for d, v in zip(i.type.tensor_type.shape.dim, feeds[i.name].shape):
                d.ClearField("dim_param")
                d.dim_value = v
    inferred = onnx.shape_inference.infer_shapes(fixed)
    model.graph.value_info.extend(inferred.graph.value_info)
    onnx.save(model, path + ".tmp")
    os.replace(path + ".tmp", path)


def export(name, out_dir):
    torch.manual_seed(0)
    # nn.MultiheadAttention's inference fast path traces to an op the exporter cannot write.
    torch.backends.mha.set_fastpath_enabled(False)
    base, opts = split_variant(name)
    module, args, in_names, out_names, dyn = MODELS[base]()
    if opts["fp16"]:
        module = module.half()
        args = tuple(a.half() if a.is_floating_point() else a for a in args)
    path = os.path.join(out_dir, name + ".onnx")
    # External data is named after the file written, so that one is written in place.
    tmp = path if opts["extdata"] else path + ".tmp"
    with torch.no_grad():
        if opts["dynamo"] or opts["extdata"]:
            dyn_shapes = None
            if dyn:
                dyn_shapes = tuple({ax: torch.export.Dim.DYNAMIC for ax in dyn.get(n, {})} or None for n in in_names)
                params = inspect.signature(module.forward).parameters.values()
                if any(p.kind == p.VAR_POSITIONAL for p in params):
                    dyn_shapes = (dyn_shapes,)  # one entry per parameter: *args is one
            prog = torch.onnx.export(module, args, input_names=in_names, output_names=out_names, dynamo=True,
                                     dynamic_shapes=dyn_shapes, external_data=opts["extdata"])
            prog.save(tmp, external_data=opts["extdata"])
        else:
            torch.onnx.export(module, args, tmp, input_names=in_names, output_names=out_names, dynamic_axes=dyn,
                              dynamo=False, opset_version=opts["opset"], do_constant_folding=True)
    if tmp != path:
        os.replace(tmp, path)
    feeds = {n: a.numpy() for n, a in zip(in_names, args)}
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {i.name: feeds[i.name] for i in sess.get_inputs()}  # unused inputs are dropped by the exporter
    t = time.perf_counter()
    outs = sess.run(None, feeds)
    ort_s = time.perf_counter() - t
    names = [o.name for o in sess.get_outputs()]
    record(out_dir, name, feeds, dict(zip(names, outs)))
    if dyn and any(n in dyn for n in feeds):
        # Run again at sizes other than the traced ones: the file's value_info was written at the traced sizes.
        alt = resized_feeds(feeds, dyn)
        record(out_dir, name + ".dyn", alt, dict(zip(names, sess.run(None, alt))))
    if opts["stale"]:
        add_stale_value_info(path, feeds)
    # torch's own result as a sanity check of the export (detection output order may differ; reported only).
    with torch.no_grad():
        ref = module(*args)
    ref = ref if isinstance(ref, tuple) else (ref,)
    diffs = []
    for r, o in zip(ref, outs):
        r = r.numpy()
        if r.shape == o.shape and r.dtype.kind == "f":
            diffs.append(float(np.max(np.abs(r - o))) if r.size else 0.0)
    return path, ort_s, [o.shape for o in outs], diffs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/cache/real-models")
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--small-limit", type=int, default=1_500_000)
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.data, exist_ok=True)
    names = a.names or DEFAULT
    failed = 0
    for name in names:
        t = time.perf_counter()
        try:
            path, ort_s, shapes, diffs = export(name, a.out)
        except Exception as e:  # report and go on: one exporter failure must not hide the others
            failed += 1
            print(f"{name}: EXPORT FAILED: {type(e).__name__}: {str(e)[:300]}")
            traceback.print_exc(limit=3, file=sys.stderr)
            continue
        size = os.path.getsize(path)
        small = size < a.small_limit and name not in NOT_CHECKED_IN
        if small:
            for suffix in (".onnx", ".onnx.data", ".inputs.npz", ".ort.npz", ".dyn.inputs.npz", ".dyn.ort.npz"):
                if os.path.exists(os.path.join(a.out, name + suffix)):
                    shutil.copyfile(os.path.join(a.out, name + suffix), os.path.join(a.data, name + suffix))
        print(f"{name}: {size / 1e6:.2f} MB, outputs {shapes}, torch-vs-ort max diff {diffs}, "
              f"ort {ort_s * 1e3:.1f} ms, export {time.perf_counter() - t:.1f} s{' (checked in)' if small else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
