# CPU image of distsoftmax: MXNet 1.9.1 (OpenBLAS) + Horovod 0.28.1 (MPI, Gloo),
# Open MPI, mpi4py, this package and Fashion-MNIST, on Debian 12 (bookworm).
# The image for CPU nodes (launch/mpijob.yaml on a CPU cluster) and for CI;
# Dockerfile.gpu is its CUDA twin.
#
#   docker build -t distsoftmax:cpu .
#   docker run --rm distsoftmax:cpu --epochs 1
#   docker run --rm --hostname localhost --entrypoint horovodrun distsoftmax:cpu \
#       -np 2 --gloo python -m distsoftmax
#   docker run --rm --entrypoint mpirun distsoftmax:cpu \
#       -np 2 python -m distsoftmax --layout mpi
#
# Versions follow pyproject.toml (tests/test_dockerfile.py checks that they
# agree); tests/test_docker.py builds this image and runs those lines.
#
# Build arguments (both optional):
#   BASE    the Debian bookworm image to start from: the public one by default,
#           or a local import (tests/test_docker.py makes one with debootstrap).
#   WHEELS  an image holding prebuilt wheels in /wheels, taken instead of
#           compiling: horovod-0.28.1-*.whl (built with MXNet, Gloo and MPI
#           against bookworm's Open MPI, as ./bootstrap.sh builds it) and
#           mpi4py-*.whl. Without it both compile here (about 15 min on 2 cores).
#           Whatever is taken, the build checks `horovodrun --check-build`.
ARG BASE=debian:bookworm
ARG WHEELS=no-wheels

# ---------------------------------------------------------------- no wheels
FROM ${BASE} AS no-wheels
WORKDIR /wheels

FROM ${WHEELS} AS wheels

# ---------------------------------------------------------------- build
FROM ${BASE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# DL3008 (pin apt versions): Debian's archive keeps only the current build of
# each package in bookworm and bookworm-security, so exact pins break the build
# as soon as a fix lands; the release is pinned by BASE (bookworm) instead.
# ca-certificates: pip's TLS; cmake, g++: Horovod; libopenmpi-dev: Horovod, mpi4py.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential ca-certificates cmake libopenmpi-dev openmpi-bin \
        python3 python3-dev python3-venv \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt

# Debian's python3 is 3.11 (pyproject: requires-python >=3.11,<3.12).
# numpy: mxnet 1.9.1 breaks on numpy 1.24 (np.bool removed); same bound as pyproject.toml.
RUN python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    && python3 -m venv "$VIRTUAL_ENV" \
    && pip install --no-cache-dir wheel==0.48.0 packaging==26.4 \
    && pip install --no-cache-dir mxnet==1.9.1 "numpy>=1.23.2,<1.24"

COPY --from=wheels /wheels /tmp/wheels

# Horovod with MXNet, MPI and Gloo: the prebuilt wheel where WHEELS has one,
# else compiled from source; checked either way.
RUN set -- /tmp/wheels/horovod-0.28.1-*.whl \
    && if [ -f "$1" ]; then \
        echo "Horovod: the prebuilt wheel $1"; \
        pip install --no-cache-dir /tmp/wheels/horovod-0.28.1-*.whl; \
    else \
        HOROVOD_WITH_MXNET=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 \
        HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 \
        pip install --no-cache-dir --no-build-isolation horovod==0.28.1; \
    fi \
    && check=$(horovodrun --check-build) \
    && echo "$check" \
    && for op in MXNet MPI Gloo; do \
           echo "$check" | grep -q "\[X\] $op" || { echo "Horovod built without $op" >&2; exit 1; }; \
       done

# mpi4py (--layout mpi) from source, as ./bootstrap.sh builds it, so that it
# links bookworm's Open MPI, as Horovod does; or the prebuilt wheel.
RUN set -- /tmp/wheels/mpi4py-*.whl \
    && if [ -f "$1" ]; then \
        echo "mpi4py: the prebuilt wheel $1"; \
        pip install --no-cache-dir --no-index /tmp/wheels/mpi4py-*.whl; \
    else \
        pip install --no-cache-dir --no-binary=mpi4py "mpi4py>=3.1"; \
    fi \
    && python -c 'from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])' \
    && rm -rf /tmp/wheels

# The package's other runtime dependencies, then the package itself, last,
# so that a change in the source rebuilds only the last layers. numpy's bound
# again: without it, newer matplotlib dependencies (contourpy) would lift numpy
# to 2.x under mxnet; `pip check` says so if anything does.
RUN pip install --no-cache-dir "tqdm>=4.60" "matplotlib>=3.7,<3.10" "pooch>=1.6" "filelock>=3.8" "tensorboardX>=2.6" \
        "numpy>=1.23.2,<1.24"
COPY pyproject.toml README.md /tmp/src/
COPY distsoftmax /tmp/src/distsoftmax
RUN pip install --no-cache-dir --no-deps /tmp/src \
    && rm -rf /tmp/src \
    && pip check

# ---------------------------------------------------------------- the image
# No compiler: the venv built above, Python, Open MPI, ssh (the MPIJob's
# launcher and workers) and the Fashion-MNIST files of Debian's
# dataset-fashion-mnist, in /usr/share/datasets/fashion-mnist, where the
# loader looks first, so nothing is downloaded at run time.
FROM ${BASE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# DL3008: as above. libgomp1, libquadmath0: libmxnet.so loads them from the system.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 libopenmpi3 openmpi-bin openssh-client openssh-server \
        libgomp1 libquadmath0 dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*

# The data as the loader checks it: SHA-256 of the *decompressed* files
# (gzip headers differ between mirrors and Debian's package), as in
# distsoftmax.data.FILES.
RUN printf '%s %s\n' \
        c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888 train-images-idx3-ubyte.gz \
        bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9 train-labels-idx1-ubyte.gz \
        5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b t10k-images-idx3-ubyte.gz \
        0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34 t10k-labels-idx1-ubyte.gz \
    | while read -r sum name; do \
        got=$(zcat "/usr/share/datasets/fashion-mnist/$name" | sha256sum | cut -d' ' -f1); \
        if [ "$got" != "$sum" ]; then echo "$name: SHA-256 $got, expected $sum" >&2; exit 1; fi; \
    done

COPY --from=build /opt/venv /opt/venv

# OMP_NUM_THREADS is left to the user: MXNet's default takes every core of the
# container. Open MPI's shared-memory transport cannot use CMA
# (process_vm_readv) without CAP_SYS_PTRACE, which containers lack.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    OMPI_MCA_btl_vader_single_copy_mechanism=none

# A numeric USER, so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --gid 1000 app \
    && useradd --create-home --uid 1000 --gid 1000 --shell /bin/bash app \
    && mkdir -p /runs \
    && chown 1000:1000 /runs \
    && python -c 'import mxnet, horovod.mxnet, mpi4py.MPI, distsoftmax'
USER 1000:1000
WORKDIR /home/app

ENTRYPOINT ["python", "-m", "distsoftmax"]
