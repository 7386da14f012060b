"""``acnn studio``: registered with the ``acnn`` command line through the ``acnn.commands`` entry point, so
that ACNNCore knows nothing of Slicer or trame."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

LISTS = {"seg": "seg", "sr": "sr", "ae": "shape", "tl": "shape"}  # a bundle's task -> the studio's list for it


def add_parser(sub):
    p = sub.add_parser("studio", help="ACNN Studio: Segment, SuperResolve and Shape Explorer in a browser",
                       description="Start the ACNN Studio web server (trame-slicer) and print its URL.")
    p.add_argument("--data", type=Path, help="an image, segmentation, DICOM folder or Slicer scene (.mrb) to load, "
                                             "or a folder of images")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: loopback only; served beyond it, results save to --output "
                        "only, or download to the browser)")
    p.add_argument("--port", type=int, default=8080, help="the port to serve on (default 8080)")
    p.add_argument("--demo", action="store_true", help="load a phantom cine stack (ED, ES)")
    p.add_argument("--output", type=Path, help="default folder for saved results (./acnn-studio-output)")
    p.add_argument("--open", action="store_true", help="open a browser")
    p.add_argument("--model", action="append", default=[], type=Path, metavar="FOLDER",
                   help="a model bundle of your own (its folder, or a training run's: a segmentation, SR, AE or T-L "
                        "model) offered beside the bundled ones, and chosen; repeatable")
    p.set_defaults(run=run)


def run(args) -> int:
    from ACNNCore.errors import InputError

    if args.data is not None and not args.data.exists():
        raise InputError(f"no such file or folder: {args.data}")
    check_port(args.host, args.port)
    if args.output is not None:  # where results save: made now, and refused now if it cannot be written
        from ACNNCore.io import check_folder

        check_folder(args.output)
    models = own_models(args.model)
    try:
        from .app import main
    except ImportError as e:
        raise InputError(f"ACNN Studio needs trame-slicer: pip install 'acnn-slicer[studio]' ({e})") from None
    return main(args.data, args.host, args.port, args.demo, args.open, args.output, models)


def own_models(folders) -> list[tuple[str, str]]:
    """``--model`` folders, checked before the studio starts: (the studio's list for it, the folder) each. A
    folder that is not a bundle of a task the studio runs is one clear error."""
    from ACNNCore.bundle import check_task, read_meta, resolve
    from ACNNCore.errors import InputError

    out = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise InputError(f"--model {folder}: no such folder (a bundled model is offered without --model)")
        meta = read_meta(resolve(folder))
        check_task(folder, meta, tuple(LISTS))
        out.append((LISTS[meta["task"]], str(folder)))
    return out


def check_port(host: str, port: int) -> None:
    """That the studio can listen on ``host:port``, before seconds of setting up (and before printing a URL
    that would not answer): a port in use or an address not of this machine is one clear error."""
    from ACNNCore.errors import InputError

    if not 1 <= port <= 65535:
        raise InputError(f"--port is a TCP port, 1 to 65535, not {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise InputError(f"cannot serve on {host}:{port}: {getattr(e, 'strerror', None) or e}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(address)
        except OSError as e:
            raise InputError(f"cannot serve on {host}:{port}: {e.strerror}"
                             + ("; choose another --port" if e.errno == errno.EADDRINUSE else "")) from None
