"""What is trained, as one value: the math flags, the learning-rate schedule."""
import pytest

from distsoftmax import task
from distsoftmax.task import FASHION_MNIST, MATH_FLAGS, LinearWarmup, Optimizer, Task
from harness import load_params, run_cli, same


def test_the_default_task_is_the_textbooks():
    t = Task()
    assert (t.lr, t.batch_size, t.init_sigma, t.optimizer.name) == (0.1, 256, 0.01, 'sgd')
    assert (FASHION_MNIST.num_classes, FASHION_MNIST.features, FASHION_MNIST.image_shape) == (10, 784, (28, 28))
    assert set(t.math_flags({'synthetic': 600, 'seed': 0})) == set(MATH_FLAGS)


def test_lr_scaling_and_warmup_are_one_schedule():
    assert Optimizer(scaling='linear').scaled_lr(1024) == pytest.approx(0.4)
    assert Optimizer(scaling='sqrt').scaled_lr(1024) == pytest.approx(0.2)
    assert Optimizer().scaled_lr(8192) == 0.1
    bound = Optimizer(scaling='linear', warmup_epochs=2).bind(batch_size=512, steps_per_epoch=10)
    warm = bound.kwargs()['lr_scheduler']
    assert isinstance(warm, LinearWarmup) and bound.kwargs()['learning_rate'] == pytest.approx(0.2)
    assert [warm(n) for n in (1, 10, 20, 21)] == pytest.approx([0.01, 0.1, 0.2, 0.2])
    assert 'lr_scheduler' not in Optimizer().bind(batch_size=256, steps_per_epoch=235).kwargs()
    assert task.REFERENCE_BATCH == 256


RUN = ['--synthetic', '3000', '--epochs', '2', '--quiet']


def test_lr_scaling_off_is_the_textbooks_run_and_linear_is_a_scaled_lr(tmp_path):
    def params(name, *flags):
        r = run_cli(*RUN, *flags, '--checkpoint-dir', tmp_path / name)
        assert r.returncode == 0, r.stderr
        return load_params(tmp_path / name / 'model.params')
    assert same(params('default'), params('none', '--lr-scaling', 'none', '--warmup-epochs', '0'))
    assert same(params('linear', '--batch-size', '512', '--lr-scaling', 'linear'),
                params('lr0.2', '--batch-size', '512', '--lr', '0.2'))


def test_a_warmup_run_resumes_bit_equal_and_its_flags_are_checked(tmp_path):
    warm = ['--lr-scaling', 'linear', '--batch-size', '512', '--warmup-epochs', '1.5']
    assert run_cli(*RUN, *warm, '--epochs', '3', '--checkpoint-dir', tmp_path / 'whole').returncode == 0
    assert run_cli(*RUN, *warm, '--epochs', '1', '--checkpoint-dir', tmp_path / 'cut').returncode == 0
    r = run_cli(*RUN, *warm, '--epochs', '3', '--checkpoint-dir', tmp_path / 'cut', '--resume')
    assert r.returncode == 0, r.stderr
    assert same(load_params(tmp_path / 'whole' / 'model.params'), load_params(tmp_path / 'cut' / 'model.params'))
    r = run_cli(*RUN, '--batch-size', '512', '--epochs', '3', '--checkpoint-dir', tmp_path / 'cut', '--resume')
    assert r.returncode == 1 and 'made with --lr-scaling linear, this run has none' in r.stderr, r.stderr
