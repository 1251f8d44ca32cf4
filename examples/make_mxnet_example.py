"""Records the bundled MXNet example with real MXNet 1.9.1 (run with a venv that has
`mxnet==1.9.1 numpy==1.23.5`; ferry itself never needs MXNet).

examples/mxnet/tiny_resnet-symbol.json + tiny_resnet-0000.params: a small residual CNN exported by
Gluon's HybridBlock.export (Conv, BatchNorm, relu, a residual add, pooling, Dense, softmax) with
fixed-seed random weights and calibrated BatchNorm statistics; input.npy and the output MXNet
computed for it, mxnet_output.npy.
"""
import os

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mxnet")
os.makedirs(here, exist_ok=True)
mx.random.seed(3)
np.random.seed(3)


class Block(nn.HybridBlock):
    def __init__(self, channels, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.conv1 = nn.Conv2D(channels, 3, padding=1, use_bias=False)
            self.bn1 = nn.BatchNorm()
            self.conv2 = nn.Conv2D(channels, 3, padding=1, use_bias=False)
            self.bn2 = nn.BatchNorm()

    def hybrid_forward(self, F, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(x + y)


class TinyResNet(nn.HybridBlock):
    def __init__(self, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.stem = nn.Conv2D(8, 3, padding=1)
            self.block = Block(8)
            self.pool = nn.GlobalAvgPool2D()
            self.fc = nn.Dense(5)

    def hybrid_forward(self, F, x):
        x = F.relu(self.stem(x))
        x = self.pool(self.block(x))
        return F.softmax(self.fc(x))


net = TinyResNet(prefix="tinyresnet_")
net.initialize(mx.init.Xavier())
x = mx.nd.array(np.random.uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32))
net(x)  # finishes Gluon's deferred initialization (shapes come from the first batch)
# Random running statistics, so inference-mode BatchNorm does real work.
for name, p in net.collect_params().items():
    if name.endswith("running_mean"):
        p.set_data(mx.nd.array(np.random.uniform(-0.1, 0.1, p.shape)))
    elif name.endswith("running_var"):
        p.set_data(mx.nd.array(np.random.uniform(0.5, 1.5, p.shape)))
    elif name.endswith("gamma"):
        p.set_data(mx.nd.array(np.random.uniform(0.5, 1.5, p.shape)))
net.hybridize()
y = net(x)
net.export(os.path.join(here, "tiny_resnet"))
np.save(os.path.join(here, "input.npy"), x.asnumpy())
np.save(os.path.join(here, "mxnet_output.npy"), y.asnumpy())
print("wrote", sorted(os.listdir(here)), "output", y.asnumpy())
