"""scaling.png: throughput against worker count, and whole-process wall time."""
import statistics

from bench import configs as C
from bench import summary as S

SERIES = (  # label, (workers, config) points, matplotlib style
    ('horovodrun, batch 256 (strong)',
     ((1, C.HOROVOD_NP1), (2, C.HOROVOD_NP2), (4, C.HOROVOD_NP4)), 'o-'),
    ('horovodrun, 256 per worker (weak)',
     ((1, C.HOROVOD_NP1), (2, C.HOROVOD_NP2_WEAK), (4, C.HOROVOD_NP4_WEAK)), 's--'),
    ('horovodrun --gloo', ((2, C.HOROVOD_NP2_GLOO),), 'v'),
    ('mpirun, Horovod workers', ((2, C.MPIRUN_HOROVOD_NP2),), 'D'),
    ('mpirun --layout mpi', ((2, C.MPI_NP2),), '^'),
    ('torchrun tuned', ((1, C.TORCH_TUNED), (2, C.TORCHRUN_TUNED)), 'x:'),
)
LINES = ((C.C_FLOOR, 'black'), (C.LOCAL, 'red'), (C.DEVICES_CPU2, 'purple'), (C.NUMPY_FLOOR, 'green'),
         (C.TEXTBOOK, 'grey'), (C.TORCH_TYPICAL, 'orange'))


def point(runs, cfg):
    v = [r[C.SAMPLES] for r in S.ok_runs(runs, cfg.name)]
    return (statistics.median(v), min(v), max(v)) if v else None


def throughput(ax, runs):
    for label, members, style in SERIES:
        pts = [(w, point(runs, c)) for w, c in members if point(runs, c)]
        if pts:
            ws, ps = zip(*pts)
            ax.errorbar(ws, [p[0] for p in ps], yerr=[[p[0] - p[1] for p in ps],
                                                      [p[2] - p[0] for p in ps]],
                        fmt=style, capsize=3, label=label)
    one = point(runs, C.HOROVOD_NP1)
    if one:
        ax.plot([1, 2, 4], [one[0] * w for w in (1, 2, 4)], ':', color='grey',
                label='linear from -np 1')
    for cfg, color in LINES:
        p = point(runs, cfg)
        if p:
            ax.axhline(p[0], color=color, lw=1, ls='-.', label=cfg.name)
    ax.set_xscale('log', base=2), ax.set_yscale('log')
    ax.set_xticks([1, 2, 4], ['1', '2', '4'])
    ax.set_xlabel('workers'), ax.set_ylabel('samples/s (median, min-max)')
    ax.set_title('training throughput'), ax.legend(fontsize=7)


def walls(ax, runs, configs):
    names = [c.name for c in configs if S.ok_runs(runs, c.name)]
    ax.barh(names, [S.median_of(runs, n, C.WALL) for n in names],
            color=['C3' if n == C.LOCAL.name else 'C0' for n in names])
    ax.axvline(C.LOCAL_WALL.want, color='k', ls='--', lw=1,
               label=f'{C.LOCAL_WALL.want:g} s target (local)')
    ax.invert_yaxis()
    ax.set_xlabel('whole-process wall time, s (median)'), ax.legend(fontsize=7)
    ax.tick_params(axis='y', labelsize=7)


def plot(path, runs, configs):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    throughput(ax1, runs)
    walls(ax2, runs, configs)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
