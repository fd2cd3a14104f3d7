"""The embedded broker (config/broker.py): a worker polling while messages are written never reads a
half-written message, so it never stops on one, and every message arrives once."""
import threading

import pytest
from kombu import Connection
from kombu.transport import filesystem

from config import broker

broker.register()
MESSAGES = 1500


def _race(tmp_path, scheme: str) -> tuple[list, list]:
    """A producer thread puts MESSAGES messages while this thread takes them as fast as it can."""
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path), "control_folder": str(tmp_path)}
    with Connection(f"{scheme}://", transport_options=options) as producing, \
            Connection(f"{scheme}://", transport_options=options) as consuming:
        out, into = producing.default_channel, consuming.default_channel
        got, errors = [], []
        done = threading.Event()

        def produce():
            for n in range(MESSAGES):
                out._put("cpu", {"n": n, "body": "x" * 2000})
            done.set()

        thread = threading.Thread(target=produce)
        thread.start()
        while not (done.is_set() and len(got) + len(errors) >= MESSAGES):
            try:
                got.append(into._get("cpu")["n"])
            except filesystem.Empty:
                if done.is_set():
                    try:
                        got.append(into._get("cpu")["n"])
                    except filesystem.Empty:
                        break
            except ValueError as exc:  # what stopped the worker: an empty or partial message file
                errors.append(exc)
        thread.join()
    return got, errors


def test_a_worker_polling_while_messages_are_written_reads_each_whole_once(tmp_path):
    got, errors = _race(tmp_path, broker.SCHEME)
    assert errors == []
    assert sorted(got) == list(range(MESSAGES))


def _visible_while_written(tmp_path, monkeypatch, module, scheme: str) -> list[list[str]]:
    """The message files a reader could take at the moment a message's body is being written."""
    tmp_path.mkdir()
    seen = []
    real = module.str_to_bytes

    def spy(value):
        seen.append(sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".cpu.msg")))
        return real(value)

    monkeypatch.setattr(module, "str_to_bytes", spy)
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path), "control_folder": str(tmp_path)}
    with Connection(f"{scheme}://", transport_options=options) as connection:
        connection.default_channel._put("cpu", {"n": 1})
    return seen


def test_a_message_file_is_visible_to_readers_only_once_it_is_whole(tmp_path, monkeypatch):
    assert _visible_while_written(tmp_path / "ours", monkeypatch, broker, broker.SCHEME) == [[]]
    # kombu's own transport shows the file under its final name, still empty, while it writes: the race.
    [[name]] = _visible_while_written(tmp_path / "kombus", monkeypatch, filesystem, "filesystem")
    assert name.endswith(".cpu.msg")


def test_an_unreadable_message_file_is_dropped_and_the_next_one_read(tmp_path):
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path), "control_folder": str(tmp_path)}
    (tmp_path / "1_broken.cpu.msg").write_bytes(b"")
    with Connection(f"{broker.SCHEME}://", transport_options=options) as connection:
        channel = connection.default_channel
        channel._put("cpu", {"n": 2})
        assert channel._get("cpu") == {"n": 2}
        with pytest.raises(filesystem.Empty):
            channel._get("cpu")
