"""From runs to numbers: medians per configuration, and targets as ratios per round.

A run is the dict measure.run_once returns, with its 'round'. A ratio is always
taken between two runs of the same round (they ran a minute apart at most),
then the median over the rounds is reported.
"""
import statistics
from dataclasses import dataclass

from bench import configs as C


def ok_runs(runs, name):
    return [r for r in runs if r['config'] == name and 'error' not in r]


def failed_runs(runs, name):
    return [r for r in runs if r['config'] == name and 'error' in r]


def median_of(runs, name, key):
    values = [metric(r, key) for r in ok_runs(runs, name)]
    return statistics.median(values) if values else None


def metric(run, key):
    """A run's number for KEY; for RSS the largest rank's peak."""
    return max(run[key]) if key == C.RSS else run[key]


def by_round(runs):
    """{round: {config name: run}} of the runs that did not fail."""
    rounds = {}
    for r in runs:
        if 'error' not in r:
            rounds.setdefault(r['round'], {})[r['config']] = r
    return rounds


def round_ratios(runs, num, den, key=C.SAMPLES):
    """num/den per round: the two runs of a round ran a few seconds apart."""
    return [pair[num][key] / pair[den][key] for _, pair in sorted(by_round(runs).items())
            if num in pair and den in pair and pair[num].get(key) and pair[den].get(key)]


@dataclass
class Outcome:
    target: C.Target
    per_round: list            # (value, config name that gave the numerator) per round
    value: float = None        # median over the rounds
    met: bool = None           # None: not measured, or no threshold

    @property
    def measured(self):
        return self.value is not None

    def best(self):
        """The numerator's config that gave the median round, for 'best of' targets."""
        names = [name for _, name in self.per_round]
        return max(set(names), key=names.count) if names else None


def evaluate(target, runs):
    """TARGET's value in each round that has its runs, and their median."""
    per_round = []
    for _, pair in sorted(by_round(runs).items()):
        nums = [(metric(pair[c.name], target.metric), c.name) for c in target.num
                if c.name in pair and pair[c.name].get(target.metric) is not None]
        if not nums or (target.den and not (pair.get(target.den.name) or {}).get(target.metric)):
            continue
        value, name = max(nums)
        if target.den:
            value /= metric(pair[target.den.name], target.metric)
        per_round.append((value, name))
    if not per_round:
        return Outcome(target, [])
    value = statistics.median(v for v, _ in per_round)
    return Outcome(target, per_round, value, target.met(value))


def shown(outcome):
    """The value as the table shows it: 'x' for ratios, the unit otherwise."""
    t = outcome.target
    if not outcome.measured:
        return '-'
    if t.den:
        text = f'{outcome.value:.3f}x' if outcome.value < 0.1 else f'{outcome.value:.2f}x'
    else:
        text = f'{outcome.value:.0f} {C.UNITS[t.metric]}' if t.metric == C.RSS \
            else f'{outcome.value:.2f} {C.UNITS[t.metric]}'
    if len(t.num) > 1:
        text += f' ({outcome.best()})'
    return text


def status(outcome):
    if not outcome.measured:
        return 'not measured'
    return {True: 'met', False: 'missed', None: '-'}[outcome.met]


def config_row(runs, cfg):
    """One row of the results table, or None if CFG did not run."""
    good, failed = ok_runs(runs, cfg.name), len(failed_runs(runs, cfg.name))
    note = cfg.note + (f'; {failed} run(s) failed, see results.json' if failed else '')
    if not good:
        return f'| {cfg.name} | {cfg.label} | {cfg.workers} | failed | | | | | | | {note} |'
    sps = [r[C.SAMPLES] for r in good]
    per_cpu = [r[C.CPU_SAMPLES] for r in good if r.get(C.CPU_SAMPLES)]
    busy = [r['cores_busy'] for r in good if r.get('cores_busy')]
    vs_local = round_ratios(runs, cfg.name, C.LOCAL.name)
    x_local = f'{statistics.median(vs_local):.2f}' if vs_local else '-'
    return (f'| {cfg.name} | {cfg.label} | {cfg.workers} | {statistics.median(sps):,.0f} '
            f'({min(sps):,.0f}-{max(sps):,.0f}) | '
            + (f'{statistics.median(per_cpu):,.0f} | ' if per_cpu else '- | ')
            + (f'{statistics.median(busy):.2f} | ' if busy else '- | ')
            + f'{x_local} | {statistics.median(r[C.WALL] for r in good):.2f} | '
            f'{statistics.median(metric(r, C.RSS) for r in good):.0f} | '
            f'{statistics.median(r["test_acc"] for r in good):.4f} | {note} |')


RESULTS_HEAD = ('| config | what ran | workers | samples/s median (min-max) | '
                'samples per CPU-s, whole process, median | cores busy | x local | '
                'wall s median | peak RSS MB/worker median | test acc | note |')


def results_table(runs, configs, extra_rows=()):
    return '\n'.join([RESULTS_HEAD, '|' + '---|' * 11] + [config_row(runs, c) for c in configs]
                     + list(extra_rows))


def targets_table(outcomes, with_status=True):
    head = (f'| {"target" if with_status else "ratio"} | measured (median) | per round |'
            + (' met |' if with_status else ''))
    rows = [head, '|---|---|---|' + ('---|' if with_status else '')]
    for o in outcomes:
        rounds = ', '.join(f'{v:.2f}' if v < 100 else f'{v:.0f}' for v, _ in o.per_round) or '-'
        rows.append(f'| {o.target.describe()} | {shown(o)} | {rounds} |'
                    + (f' {status(o)} |' if with_status else ''))
    return '\n'.join(rows)
