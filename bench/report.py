"""Writing what a bench run measured: RESULTS.md and results.json (scaling.png: plot.py)."""
import json
import re
import statistics
from pathlib import Path

from bench import configs as C
from bench import summary as S

WHY_FILE = Path(__file__).resolve().parent / 'WHY.md'


def why_sections(path=WHY_FILE):
    """{target key: its analysis} from WHY.md's '## key' sections."""
    text = Path(path).read_text() if Path(path).exists() else ''
    parts = re.split(r'^## +(\S+) *\n', text, flags=re.M)
    return {key: body.strip() for key, body in zip(parts[1::2], parts[2::2])}


def why(outcomes, sections=None):
    """The analyses of the targets this run missed, by target key."""
    sections = why_sections() if sections is None else sections
    missed = [o.target for o in outcomes if o.met is False]
    if not missed:
        return 'Every measured target is met.'
    return '\n\n'.join(f'**{t.describe()}** (`{t.key}`): '
                       + sections.get(t.key, 'not analysed yet (no section in bench/WHY.md).')
                       for t in missed)


def write_json(path, info, args, data, configs, runs):
    path.write_text(json.dumps(
        {'machine': info, 'epochs': args.epochs, 'repeats': args.repeats, 'data': data['source'],
         'configs': [dict(c.__dict__, note=c.note) for c in configs], 'runs': runs},
        indent=1) + '\n')


def header(info, args, data, runs, elapsed, argv):
    loads = [r['load1_before'] for r in runs] or [0.0]
    other = [r['other_cpu_s'] / r['wall_s'] for r in runs] or [0.0]
    quiet = 'quiet' if max(other) < 0.1 else 'not quiet: compare ratios, not absolute numbers'
    changed = ('; the working tree changed during the run, the copy did not'
               if info['tree_changed'] else '')
    torch = (f'torch {info["torch"]} ({info["torch_python"]})' if info['torch']
             else 'torch: not run (no --torch PYTHON given): the PyTorch rows and peer ratios '
                  'are skipped')
    return f"""# distsoftmax benchmark

Written by `python bench/run.py` ({' '.join(argv) or 'no flags'}); raw runs in
`results.json`, plot in `scaling.png`.

- machine: {info['cpu']}, {info['cores']} cores usable
- python {info['python']}, mxnet {info['mxnet']}, horovod {info['horovod']},
  numpy {info['numpy']}, mpi4py {info['mpi4py']}
- {torch}
- distsoftmax as copied at the start: git {info['git']}; sources digest {info['code_digest']}{changed}
- horovodrun: its default controller, here {info['horovodrun_controller']}
- date: {info['date']}; {elapsed / 60:.1f} min in all
- data: {data['source']}; {args.epochs} epoch(s), global batch 256 unless noted
- {args.repeats} repeat(s) of every configuration, in alternation; 1-minute load average
  before a run: {min(loads):.2f} to {max(loads):.2f}; other processes' CPU use during a
  run (machine busy time less the run's own): median {statistics.median(other):.2f}, max
  {max(other):.2f} cores ({quiet})
- OMP_NUM_THREADS per process: 1, unless a config says otherwise (the anchors and the
  PyTorch peer too)
"""


def write_markdown(path, runs, configs, info, args, data, elapsed, argv):
    targets = [S.evaluate(t, runs) for t in C.TARGETS]
    peers = [S.evaluate(t, runs) for t in C.PEERS]
    peers_text = (S.targets_table(peers, with_status=False) if info['torch'] else
                  'Skipped: no `--torch PYTHON` was given, so no PyTorch configuration ran.')
    path.write_text(f"""{header(info, args, data, runs, elapsed, argv)}
## Results

samples/s: training samples over the in-process time of all epochs, evaluation
included; wall: the whole process measured from outside (interpreter start,
imports, data load and verification, launcher); peak RSS: the largest rank's own
peak (GNU time around each rank); x local: per-round ratio to the local run, median.

{S.results_table(runs, configs)}

## Targets

Each value is taken per round (runs next to each other), then the median of the
rounds; "best 2-worker layout" is the fastest of
{', '.join(c.name for c in C.TWO_WORKER_LAYOUTS)} in each round (the one named won
most rounds).

{S.targets_table(targets)}

## Peer: PyTorch

The same model and math in PyTorch (`../shared/anchors/torch_*.py`), as ratios
within a round; above 1 means distsoftmax is faster (or, for RSS, larger).

{peers_text}

## Why the misses miss

{why(targets)}
""")
