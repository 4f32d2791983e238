"""login-images: OCI images without a registry, a Docker daemon or a container engine.

Why: this project's images must be buildable and runnable on a machine where no container registry is
reachable and no Docker daemon runs (the measured state of the CI machines), while Debian's, PyPI's and
the other package registries are. What it needs: root, debootstrap, util-linux (unshare, mount), coreutils
(chroot) and Python 3.11+ — standard library only, so ``make build`` runs it before any virtualenv exists.

Design notes
------------
* **One model, two front ends.** ``dockerfile.py`` translates the subset of the Dockerfile language the
  services' ``services/Dockerfile`` uses (so the daemon-free images are built from what the Dockerfile
  says, and drift is impossible); ``tomlspec.py`` reads a small TOML spec for images that have no
  Dockerfile here (the operators' images: a JRE + jars + scripts + tini, or one static Go binary on an
  empty base). Both produce a ``spec.ImageSpec``; ``build.py`` knows nothing else.
* **The base is Debian, not the official image.** ``python:3.11-slim-bookworm`` becomes a
  ``debootstrap --variant=minbase bookworm`` root with ``python3`` (3.11, as the Dockerfile's base:
  checked), ``ca-certificates``, ``netbase``, ``tzdata`` and ``python-is-python3``, upgraded from the
  security suite, then trimmed (apt lists and caches, docs but the copyright files, manuals,
  translations, logs, host files). What differs from the official image: Python is Debian's 3.11.x in
  /usr/bin (the official image builds the latest 3.11.x into /usr/local), the official image's
  ``PYTHON_VERSION``/``GPG_KEY`` variables are absent, and the build stage's pip is Debian's.
* **Layers like Docker's, cached better.** Steps run in a chroot on an overlay mount inside private
  mount and PID namespaces (``rootfs.py``): the overlay's upper directory *is* the layer. A build stage
  splits into a dependency layer and a code layer, each keyed by the digest of its inputs, so a code edit
  rebuilds one small layer in seconds and a warm rebuild of unchanged inputs only re-assembles the archive.
* **Deterministic.** Same inputs, same digests: sorted tar entries, one fixed mtime
  (``SOURCE_DATE_EPOCH``, default 2024-01-01), numeric owners (root except what a step chowned), no
  xattrs, gzip without timestamps, canonical JSON, timestamp ``.pyc`` rewritten as checked-hash pycs
  (``tarball.py``). The cached base is the one input that is not re-derived: its package versions are
  what Debian served when it was built (``--refresh-base`` rebuilds it).
* **Cached per user** under ``${XDG_CACHE_HOME:-~/.cache}/login-stream/images`` with a ``flock`` per
  entry (``cache.py``): worktrees and concurrent builds share one base.
* **Output**: an OCI image layout packed as a tar (``oci.py``), importable by ``ctr images import``
  (``containerd.py``), ``podman load`` or ``docker load``; ``verify`` re-checks every digest and diff_id.

Module map: ``spec`` (the model) · ``dockerfile``, ``tomlspec`` (front ends) · ``context`` (build context,
.dockerignore, input digests) · ``rootfs`` (debootstrap, chroot runner, trim rules, dpkg facts) ·
``steps`` (COPY/mkdir into a layer) · ``accounts`` (declared users) · ``tarball`` (deterministic layers) ·
``cache`` · ``build`` (orchestration) · ``oci`` (layout, archive, verify) · ``containerd`` (import) ·
``cli``.
"""
