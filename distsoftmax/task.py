"""What is trained, apart from where it runs: one frozen value.

A Task is the data set's spec (files, digests, image shape, classes), the
model's factory, the optimizer and the global batch, the seed and the tail
rule: everything that decides the trajectory, and so everything a checkpoint
must share with a run that resumes it (`math_flags`, defined here once).
`Task.of(cfg)` builds it from a configuration, once; the layout only decides
how the gradients are reduced. Nothing here imports mxnet.
"""
from dataclasses import dataclass, field
from typing import Callable, Mapping, Tuple

# the source of these numbers: Dive into Deep Learning, "Softmax Regression in
# Gluon" (MXNet edition): Dense(10), Normal(sigma=0.01), SGD lr 0.1, batch 256
TEXTBOOK_LR, TEXTBOOK_BATCH, TEXTBOOK_SIGMA = 0.1, 256, 0.01


@dataclass(frozen=True)
class DataSpec:
    """A data set of IDX files: (n, *image_shape) uint8 images, labels 0..num_classes-1.

    files: the four file names -> SHA-256 of their *decompressed* content (gzip
    headers differ between mirrors and Debian's package, the content does not)."""
    name: str
    files: Mapping[str, str]
    image_shape: Tuple[int, int]
    classes: Tuple[str, ...]

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def features(self):
        """Inputs of the model: pixels of one image."""
        rows, cols = self.image_shape
        return rows * cols

    def generic(self):
        """The same shapes with neutral class names: for data that is not this set."""
        return DataSpec('other IDX data', self.files, self.image_shape,
                        tuple(f'class {i}' for i in range(self.num_classes)))


# Zalando's Fashion-MNIST (github.com/zalandoresearch/fashion-mnist), its README's class names
FASHION_MNIST = DataSpec(
    name='Fashion-MNIST',
    files={
        'train-images-idx3-ubyte.gz': 'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',
        'train-labels-idx1-ubyte.gz': 'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
        't10k-images-idx3-ubyte.gz': '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
        't10k-labels-idx1-ubyte.gz': '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34',
    },
    image_shape=(28, 28),
    classes=('t-shirt/top', 'trouser', 'pullover', 'dress', 'coat',
             'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot'))


# --lr-scaling: the learning rate of a global batch B is lr * f(B / REFERENCE_BATCH).
# linear: Goyal et al. 2017, "Accurate, Large Minibatch SGD" (with a gradual warmup),
# as Horovod's examples scale by the worker count; sqrt: Krizhevsky 2014, "One weird trick"
REFERENCE_BATCH = TEXTBOOK_BATCH
SCALINGS = {'none': lambda k: 1.0, 'linear': lambda k: k, 'sqrt': lambda k: k ** 0.5}


class LinearWarmup:
    """The learning rate at update n (1, 2, ...): base_lr * n / steps for the first
    `steps` updates, then base_lr (Goyal et al.'s gradual warmup, per step). An
    MXNet lr_scheduler: the optimizer calls it with its update count, which a
    checkpoint keeps, so a resumed run continues the same schedule."""

    def __init__(self, base_lr, steps):
        self.base_lr, self.steps = base_lr, max(int(steps), 1)

    def __call__(self, num_update):
        return self.base_lr * min(1.0, num_update / self.steps)


@dataclass(frozen=True)
class Bound:
    """An optimizer for one run's plan: what Layout.trainer() is given."""
    name: str
    params: Tuple[Tuple[str, object], ...]

    def kwargs(self):
        return dict(self.params)


@dataclass(frozen=True)
class Optimizer:
    """Gluon's optimizer name, the learning rate, and its one schedule: --lr-scaling
    for the global batch, then --warmup-epochs of linear warmup, per step."""
    name: str = 'sgd'
    lr: float = TEXTBOOK_LR
    scaling: str = 'none'
    warmup_epochs: float = 0.0

    def scaled_lr(self, batch_size):
        return self.lr * SCALINGS[self.scaling](batch_size / REFERENCE_BATCH)

    def bind(self, *, batch_size, steps_per_epoch):
        params = [('learning_rate', self.scaled_lr(batch_size))]
        if self.warmup_epochs:
            params.append(('lr_scheduler', LinearWarmup(self.scaled_lr(batch_size),
                                                        round(self.warmup_epochs * steps_per_epoch))))
        return Bound(self.name, tuple(params))


def softmax_regression(spec):
    """The textbook's model for spec: Dense(num_classes) on x/255 (model.PixelDense)."""
    from . import model   # mxnet: loaded when a run builds its model, not when a Task is made
    # a fixed prefix: Gluon's default counts blocks made in the process (dense0_, dense1_, ...)
    return model.PixelDense(spec.num_classes, in_units=spec.features, prefix='softmax_')


# the checkpoint's math flags: key -> the flag that sets it (in messages)
MATH_FLAGS = {'batch_size': '--batch-size', 'lr': '--lr', 'seed': '--seed', 'drop_last': '--drop-last',
              'lr_scaling': '--lr-scaling', 'warmup_epochs': '--warmup-epochs', 'data': 'the data'}


@dataclass(frozen=True)
class Task:
    """What is trained. batch_size is the global batch: every update divides the
    summed gradient by it, the tail's too (README: "The tail rule")."""
    data: DataSpec = FASHION_MNIST
    model: Callable = softmax_regression
    init_sigma: float = TEXTBOOK_SIGMA
    optimizer: Optimizer = field(default_factory=Optimizer)
    batch_size: int = TEXTBOOK_BATCH
    seed: int = 0
    drop_last: bool = False

    @classmethod
    def of(cls, cfg):
        """The task of a config.Train."""
        return cls(optimizer=Optimizer(lr=cfg.lr, scaling=cfg.lr_scaling, warmup_epochs=cfg.warmup_epochs),
                   batch_size=cfg.batch_size, seed=cfg.seed, drop_last=cfg.drop_last)

    @property
    def lr(self):
        return self.optimizer.lr

    def bound_optimizer(self, plan):
        """The optimizer for plan (shard.EpochPlan): its lr scaled and its warmup in steps."""
        return self.optimizer.bind(batch_size=self.batch_size, steps_per_epoch=len(plan.step_sizes))

    def math_flags(self, identity):
        """What a checkpoint must share with a run that resumes it; identity: the data's
        (data.Dataset.identity). Keys are MATH_FLAGS'."""
        values = {'batch_size': self.batch_size, 'lr': self.lr, 'seed': self.seed, 'drop_last': self.drop_last,
                  'lr_scaling': self.optimizer.scaling, 'warmup_epochs': self.optimizer.warmup_epochs,
                  'data': identity}
        assert values.keys() == MATH_FLAGS.keys()
        return values
