"""``login-images`` (or ``python -m login_images`` with ``tools/images/src`` on PYTHONPATH: standard
library only, so ``make build`` needs no virtualenv)::

    login-images build --dockerfile services/Dockerfile --target producer --build-arg SERVICE=producer \\
        --name localhost/login-producer:dev --output .cache/images/login-producer.tar
    login-images build --spec tools/images/examples/static-binary.toml --context DIR --name ... --output ...
    login-images verify ARCHIVE...                    digests, sizes, diff_ids; prints each image
    login-images import --address SOCKET ARCHIVE...   into a containerd (namespace k8s.io)
    login-images cache [--clear]                      where the cache is, how big; or empty it

Every failure the builder foresees (:class:`~login_images.errors.ImageError`) ends in one message on
stderr and exit code 1 (2 for a machine that cannot build), never a traceback.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from login_images import containerd, dockerfile, oci, tomlspec
from login_images.build import Builder, epoch_from_env
from login_images.cache import Cache, default_dir, remove
from login_images.errors import ImageError, PreflightError
from login_images.rootfs import preflight
from login_images.spec import ImageSpec


def say(message: str) -> None:
    print(message, flush=True)


def _build_args(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        key, eq, rest = value.partition("=")
        if not eq:
            raise ImageError(f"--build-arg {value}: expected NAME=VALUE")
        out[key] = rest
    return out


def _spec(args: argparse.Namespace) -> ImageSpec:
    if args.spec:
        return tomlspec.load(Path(args.spec), Path(args.context) if args.context else None)
    if not args.target:
        raise ImageError("--dockerfile needs --target (the stage to build)")
    context = Path(args.context or ".").resolve()
    return dockerfile.translate(Path(args.dockerfile), args.target, _build_args(args.build_arg), context)


def cmd_build(args: argparse.Namespace) -> int:
    spec = _spec(args)
    preflight(debian=spec.base.kind == "debian")  # before the cache is touched: say what is missing first
    builder = Builder(Cache(Path(args.cache)), epoch_from_env(), say, refresh_base=args.refresh_base)
    result = builder.build(spec, args.name, Path(args.output))
    say(result.summary())
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    mb = 1024 * 1024
    for archive in args.archives:
        for image in oci.verify(Path(archive)):
            config = image.config.get("config", {})
            say(
                f"{archive}: {image.name} OK — {len(image.layers)} layers, "
                f"{image.uncompressed_size / mb:.1f} MB unpacked, {image.size / mb:.1f} MB compressed; "
                f"user {config.get('User', '')!r}, entrypoint {config.get('Entrypoint')}"
            )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    names = containerd.import_archives(args.address, [Path(a) for a in args.archives], args.namespace)
    for name in names:
        say(f"imported {name} into {args.address} (namespace {args.namespace})")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    root = Path(args.cache)
    if args.clear:
        if root.exists():
            remove(root)
        say(f"removed {root}")
        return 0
    size = subprocess.run(
        ["du", "-sh", str(root)], capture_output=True, text=True, check=False
    ).stdout.split()
    say(f"{root}: {size[0] if size else 'empty'}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="login-images", description="Daemon-free OCI image builder.")
    top.add_argument("--cache", default=str(default_dir()), help="cache directory (default: %(default)s)")
    sub = top.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build an image into an OCI archive")
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--dockerfile", help="a Dockerfile (with --target)")
    source.add_argument("--spec", help="a TOML image spec")
    build.add_argument("--target", help="the Dockerfile stage to build")
    build.add_argument("--build-arg", action="append", default=[], help="NAME=VALUE, as docker build")
    build.add_argument("--context", help="build context (default: . for a Dockerfile, the spec's folder)")
    build.add_argument("--name", required=True, help="image reference, e.g. localhost/login-producer:dev")
    build.add_argument("--output", required=True, help="the OCI archive to write")
    build.add_argument("--refresh-base", action="store_true", help="debootstrap the base again")
    build.set_defaults(run=cmd_build)
    verify = sub.add_parser("verify", help="check an OCI archive's digests, sizes and diff_ids")
    verify.add_argument("archives", nargs="+")
    verify.set_defaults(run=cmd_verify)
    imp = sub.add_parser("import", help="import OCI archives into a containerd")
    imp.add_argument("--address", required=True, help="containerd socket")
    imp.add_argument("--namespace", default=containerd.DEFAULT_NAMESPACE)
    imp.add_argument("archives", nargs="+")
    imp.set_defaults(run=cmd_import)
    cache = sub.add_parser("cache", help="show or clear the build cache")
    cache.add_argument("--clear", action="store_true")
    cache.set_defaults(run=cmd_cache)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except PreflightError as exc:
        print(f"login-images: {exc}", file=sys.stderr)
        return 2
    except ImageError as exc:
        print(f"login-images: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file the builder may not read or write: the path says which
        print(f"login-images: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("login-images: interrupted", file=sys.stderr)
        return 130
