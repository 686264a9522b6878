"""Faults injected from outside the product, for the tests: put this directory
on PYTHONPATH and set DISTSOFTMAX_FAULT, e.g. 'sleep=0.02' (seconds added to
every optimizer step), 'crash_after=model.params@2' (the process dies right
after writing that checkpoint file of epoch 2: model.params, trainer.states or
state.json) or 'fail_writing=model.params@2'
(writing it fails as on a full disk). Each patch is applied when
its module is first imported."""
import importlib.abc
import importlib.util
import os
import sys
import time


def _options():
    spec = os.environ.get('DISTSOFTMAX_FAULT', '')
    return dict(kv.split('=', 1) for kv in spec.split(',') if '=' in kv)


def _slow_steps(module, seconds):
    step = module.Trainer.step

    def slow_step(self, *args, **kwargs):
        time.sleep(seconds)
        return step(self, *args, **kwargs)
    module.Trainer.step = slow_step


def _crash_after(module, name, epoch):
    write_atomic, write_text = module.write_atomic, module.write_text

    def maybe_crash(path):
        if os.path.basename(path) == name and f'epoch-{epoch:04d}' in path:
            os._exit(9)

    def write_then_maybe_crash(path, write, durable=False):
        write_atomic(path, write, durable)
        maybe_crash(path)

    def write_text_then_maybe_crash(path, text, durable=False):
        write_text(path, text, durable)
        maybe_crash(path)
    module.write_atomic, module.write_text = write_then_maybe_crash, write_text_then_maybe_crash


def _fail_writing(module, name, epoch):
    write_atomic = module.write_atomic

    def write_or_fail(path, write, durable=False):
        if os.path.basename(path) == name and f'epoch-{epoch:04d}' in path:
            raise OSError(28, 'No space left on device', path)   # ENOSPC, as a full disk says
        write_atomic(path, write, durable)
    module.write_atomic = write_or_fail


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def __init__(self, patches):
        self.patches = patches

    def find_spec(self, name, path=None, target=None):
        if name not in self.patches:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            self.patches.pop(name)(module)
        spec.loader.exec_module = exec_module
        return spec


def _install():
    opts, patches = _options(), {}
    if 'sleep' in opts:
        patches['mxnet.gluon.trainer'] = lambda m: _slow_steps(m, float(opts['sleep']))
    if 'crash_after' in opts:
        name, _, epoch = opts['crash_after'].partition('@')
        patches['distsoftmax.checkpoint'] = lambda m: _crash_after(m, name, int(epoch))
    if 'fail_writing' in opts:
        name, _, epoch = opts['fail_writing'].partition('@')
        patches['distsoftmax.checkpoint'] = lambda m: _fail_writing(m, name, int(epoch))
    if patches:
        sys.meta_path.insert(0, _PatchOnImport(patches))


_install()
