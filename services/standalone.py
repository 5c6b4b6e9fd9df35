"""`biapp standalone`: the whole system in one process, for trying it out.

SQLite under the data directory, Dramatiq's in-memory broker with in-process
workers, a scheduler thread ticking every minute, and a local SMTP sink that stores
every email as an .eml file under <data-dir>/outbox.

The API's port is taken first: a busy one is one line and exit status 2 before anything is created,
seeded or printed. With --demo, a new demo report runs once at once, and the demo block (console
address, login, outbox) is printed after that run, so it is the last thing on the screen.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import logging
import os
import secrets
import signal
import socket
import stat
import sys
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller
from cryptography.fernet import Fernet
from dramatiq import Worker
from werkzeug.serving import get_sockaddr, make_server, select_address_family

from services.api.app import create_app
from services.bootstrap import SERVICES, bootstrap
from shared.clock import SystemClock
from shared.config import load_settings
from shared.db import make_engine, make_session_factory
from shared.db.migrate import upgrade
from shared.outbound import AllowEntry

log = logging.getLogger("biapp.standalone")


class OutboxHandler:
    """aiosmtpd handler: every accepted message becomes one .eml file."""

    def __init__(self, outbox: Path):
        self.outbox = outbox
        self.count = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.count += 1
        message = message_from_bytes(envelope.content, policy=policy.default)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for rcpt in envelope.rcpt_tos:
            safe = "".join(c if c.isalnum() or c in "@.-_" else "_" for c in rcpt)
            path = self.outbox / f"{stamp}-{self.count:05d}-{safe}.eml"
            path.write_bytes(message.as_bytes())
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _persistent_secret(path: Path, make) -> str:
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


# Everything the standalone keeps is private to the account running it: its database, keys and
# admin password, the emails in the outbox (with their reports) and any artifact files.
PRIVATE_UMASK = 0o077
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_OWN_FILES = ("secret_key", "fernet_key", "admin_password")
_OWN_DB = "biapp.db"  # and biapp.db-wal, -shm, -journal
_OWN_DIRS = ("outbox", "sqlite")


def _make_private(path: Path, mode: int) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or stat.S_IMODE(info.st_mode) == mode:
        return  # a link is never followed out of the data directory
    try:
        path.chmod(mode)
    except OSError as exc:
        log.warning("cannot make %s private (mode %o): %s", path, mode, exc)


def _make_tree_private(top: Path) -> None:
    if not top.is_dir() or top.is_symlink():
        return
    _make_private(top, PRIVATE_DIR)
    for folder, dirnames, filenames in os.walk(top):  # does not descend into linked folders
        for name in dirnames:
            _make_private(Path(folder, name), PRIVATE_DIR)
        for name in filenames:
            if stat.S_ISREG(os.lstat(os.path.join(folder, name)).st_mode):
                _make_private(Path(folder, name), PRIVATE_FILE)


def secure_data_dir(data_dir: Path, *, artifact_store: str = "database") -> None:
    """Files 0600, folders 0700: whatever an older version or a looser umask left behind.

    Only what the standalone itself keeps there is touched; the operator's own files are not.
    """
    data_dir = data_dir.resolve()
    info = data_dir.lstat()
    if info.st_mode & stat.S_ISVTX or info.st_uid != os.geteuid():
        log.warning("data directory %s is shared or not ours: its own mode is left as it is", data_dir)
    else:
        _make_private(data_dir, PRIVATE_DIR)
    for name in _OWN_FILES:
        _make_private(data_dir / name, PRIVATE_FILE)
    for path in data_dir.glob(f"{_OWN_DB}*"):
        if path.name == _OWN_DB or path.name[len(_OWN_DB) :] in ("-wal", "-shm", "-journal"):
            if stat.S_ISREG(path.lstat().st_mode):
                _make_private(path, PRIVATE_FILE)
    for name in _OWN_DIRS:
        _make_tree_private(data_dir / name)
    if artifact_store.startswith("filesystem:"):
        artifacts = Path(artifact_store.split(":", 1)[1]).resolve()
        if artifacts.is_relative_to(data_dir) and artifacts != data_dir:
            _make_tree_private(artifacts)


def prepare_environment(data_dir: Path, host: str, port: int) -> None:
    """Defaults for the embedded mode; any BIAPP_* already set wins."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "outbox").mkdir(exist_ok=True)
    (data_dir / "sqlite").mkdir(exist_ok=True)
    defaults = {
        "BIAPP_DATABASE_URL": f"sqlite:///{(data_dir / 'biapp.db').resolve()}",
        "BIAPP_BROKER_URL": "memory://",
        "BIAPP_SECRET_KEY": _persistent_secret(data_dir / "secret_key", lambda: secrets.token_urlsafe(48)),
        "BIAPP_FERNET_KEYS": _persistent_secret(data_dir / "fernet_key", lambda: Fernet.generate_key().decode()),
        "BIAPP_SQLITE_ROOT": str((data_dir / "sqlite").resolve()),
        "BIAPP_PUBLIC_URL": f"http://{host}:{port}",
        "BIAPP_LOG_FORMAT": "text",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def _ticker(wiring, stop: threading.Event) -> None:
    """The standalone scheduler: the same every-minute tick periodiq sends in production."""
    last_purge_day = None
    while not stop.is_set():
        names = ["dispatch_due_reports", "dispatch_due_alerts", "sweep_stuck_executions"]
        if time.strftime("%Y-%m-%d") != last_purge_day:  # at start, then once a day
            last_purge_day = time.strftime("%Y-%m-%d")
            names.append("purge_expired")
        for name in names:
            actor = wiring.actors.get(name)
            if actor is not None:
                actor.send()
        stop.wait(60 - time.time() % 60 + 0.5)


class PortBusyError(OSError):
    """The API's port cannot be listened on; the message is one line for the person who chose it."""


def claim_port(host: str, port: int) -> socket.socket:
    """The API's listening socket, taken before anything is created, seeded or printed."""
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does: TIME_WAIT is no obstacle
    try:
        sock.bind(get_sockaddr(host, port, family))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror})"
        raise PortBusyError(
            f"biapp: port {port} on {host} {why}; start on another one with --port (make run PORT=8080)"
        ) from None
    return sock


class _QuietPerConnection(logging.Filter):
    """The SMTP sink's per-connection lines (peer, EOF, connection lost) are debug detail, not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


FIRST_RUN_WAIT_S = 30


def start_first_run(factory, publisher, seeded):
    """Run the new demo report once now, so its first email lands in the outbox within seconds; its id."""
    from shared import runs, users

    with factory() as session:
        admin = users.find_by_email(session, seeded.email)
    now = SystemClock().now()
    return runs.run_now(factory, publisher, seeded.report_id, trigger="manual", requester=admin, now=now).id


def announce_demo(factory, banner: str, first_run_id, stop: threading.Event) -> None:
    """Print the demo block once the first run has ended (or after FIRST_RUN_WAIT_S), so it comes after that
    run's log lines: the last thing on the screen is how to log in."""
    from shared.executions import TERMINAL
    from shared.models import ReportExecution

    deadline = time.monotonic() + FIRST_RUN_WAIT_S
    while first_run_id is not None and time.monotonic() < deadline and not stop.is_set():
        with factory() as session:
            execution = session.get(ReportExecution, first_run_id)
            if execution is None or execution.status in TERMINAL:
                break
        stop.wait(0.25)
    time.sleep(0.2)  # the run's last log line is written after its row is closed
    print(banner, flush=True)


def demo_banner(seeded, base: str, outbox: Path) -> str:
    """The demo login as a block of its own, printed last so it is what the person sees."""
    from services.demo import MAIN_REPORT

    schedule = seeded.schedule
    when = f"daily at {schedule['time']} ({schedule['timezone']})"
    first = "the first run was started when the demo was seeded" if seeded.report_is_new else ""
    lines = [
        "",
        "  Demo",
        f"    console:  {base}/",
        f"    login:    {seeded.email} / {seeded.password}",
        f"    report:   {MAIN_REPORT} (a dashboard as XLSX, PDF and CSV), {when}",
        f"    emails:   {outbox}" + (f" ({first})" if first else ""),
        "",
    ]
    return "\n".join(lines)


def run_standalone(*, data_dir: str, port: int, demo: bool, host: str = "127.0.0.1") -> int:
    try:
        listener = claim_port(host, port)
    except PortBusyError as exc:
        print(exc, file=sys.stderr, flush=True)
        return 2
    os.umask(PRIVATE_UMASK)  # before anything is created: files 0600, folders 0700
    root = Path(data_dir).resolve()
    prepare_environment(root, host, port)
    settings = load_settings()
    from shared.logs import configure_logging

    configure_logging("standalone", settings.log_format, settings.log_level)
    logging.getLogger("mail.log").addFilter(_QuietPerConnection())  # aiosmtpd's logger
    secure_data_dir(root, artifact_store=settings.artifact_store)
    upgrade(settings.database_url)

    handler = OutboxHandler(root / "outbox")
    smtp_port = free_port()
    smtp = Controller(handler, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    # Users' own SMTP settings may point at the sink: the outbound policy lets exactly it through.
    sink = AllowEntry(network=ipaddress.ip_network("127.0.0.1/32"), port=smtp_port)
    settings = dataclasses.replace(settings, outbound_allow=(*settings.outbound_allow, sink))

    factory = make_session_factory(make_engine(settings.database_url))
    wiring = bootstrap(SERVICES, settings=settings, configure_logs=False, session_factory=factory)
    seeded = None
    if demo:
        from services.demo import seed_demo

        seeded = seed_demo(factory, settings, smtp_host="127.0.0.1", smtp_port=smtp_port, data_dir=root)
    else:
        from services.demo import point_default_mail_at

        point_default_mail_at(factory, smtp_host="127.0.0.1", smtp_port=smtp_port)

    worker = Worker(wiring.broker, worker_threads=4)
    worker.start()
    stop = threading.Event()
    ticker = threading.Thread(target=_ticker, args=(wiring, stop), name="scheduler", daemon=True)
    ticker.start()

    from shared.messaging import BrokerPublisher

    publisher = BrokerPublisher(wiring.broker)
    app = create_app(settings, publisher=publisher, session_factory=factory)
    server = make_server(host, port, app, threaded=True, fd=listener.fileno())
    listener.close()  # the server holds its own copy of the socket
    base = f"http://{host}:{port}"
    print(f"BIApp Reports is running on {base}  (API docs: {base}/api/docs)", flush=True)
    print(f"Emails are written to {root / 'outbox'}", flush=True)
    if seeded is not None:
        first_run_id = start_first_run(factory, publisher, seeded) if seeded.report_is_new else None
        banner = demo_banner(seeded, base, root / "outbox")
        threading.Thread(
            target=announce_demo, args=(factory, banner, first_run_id, stop), name="demo-banner", daemon=True
        ).start()

    def _stop(_signum, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.serve_forever()
    finally:
        stop.set()
        worker.stop(timeout=10_000)
        smtp.stop()
    return 0
