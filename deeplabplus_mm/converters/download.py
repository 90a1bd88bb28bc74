"""Resumable, size-checked download, standard library only (urllib).

Bytes go to ``<file>.part``, resumed with HTTP Range, and the file takes
its name only when complete and checked (:func:`download`).
"""
import gzip
import os
import os.path as osp
import re
import socket
import sys
import time
import urllib.error
import urllib.request
import zlib
from typing import Optional, Tuple

from .zoo import ZooError


class _Progress:
    """Bytes received: a live line on a terminal, else a line per quarter."""

    def __init__(self, total: Optional[int], done: int, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.total, self.start, self.t0 = total, done, time.monotonic()
        self.next_quarter, self.printed = 1, None

    def update(self, done: int, final: bool = False):
        mib = done / 2**20
        if self.total:
            fraction = done / self.total
            text = f'{mib:.1f} / {self.total / 2**20:.1f} MiB ' \
                   f'({100 * fraction:.0f} %)'
        else:
            fraction, text = None, f'{mib:.1f} MiB'
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        rate = (done - self.start) / 2**20 / elapsed
        if self.tty:
            end = '\n' if final else ''
            self.stream.write(f'\r  {text}, {rate:.1f} MiB/s{end}')
            self.stream.flush()
        elif (final and text != self.printed) or (
                fraction is not None and fraction >= self.next_quarter / 4):
            if fraction is not None:
                while self.next_quarter <= 4 * fraction:
                    self.next_quarter += 1
            print(f'  {text}', file=self.stream, flush=True)
            self.printed = text


def _content_range(value: str) -> Tuple[Optional[int], Optional[int]]:
    """``(first byte, total)`` of a ``Content-Range: bytes a-b/total``."""
    match = re.match(r'bytes (\d+)-\d+/(\d+|\*)', value or '')
    if not match:
        return None, None
    total = match.group(2)
    return int(match.group(1)), None if total == '*' else int(total)


def download(url: str, dest: str, timeout: float = 60,
             attempts: int = 4, check=None, stream=None) -> str:
    """Fetch ``url`` into ``dest``.

    Bytes go to ``dest + '.part'``, which a later call resumes with an HTTP
    Range request (also after an interrupted transfer within this call, up
    to ``attempts`` requests); the received size must equal what the server
    announced (Content-Length / Content-Range) and ``check(part)`` must
    pass; only then is the file renamed to ``dest``: ``dest`` never holds a
    partial file.

    Raises:
        ZooError: network failure, HTTP error, a transfer still incomplete
            after ``attempts`` requests, more bytes than announced, a
            failed ``check`` (the part file is deleted then).
    """
    part = dest + '.part'
    os.makedirs(osp.dirname(osp.abspath(dest)), exist_ok=True)
    stream = stream or sys.stdout
    last_problem = ''
    for _ in range(attempts):
        have = osp.getsize(part) if osp.exists(part) else 0
        headers = {'User-Agent': 'deeplabplus-mm'}
        if have:
            headers['Range'] = f'bytes={have}-'
        try:
            response = urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # nothing left at that offset
                os.remove(part)
                last_problem = (f'the server refused to resume at byte '
                                f'{have}')
                continue
            raise ZooError(f'{url}: HTTP {e.code} {e.reason}') from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, 'reason', e)
            raise ZooError(
                f'cannot download {url}: {reason}. Check the network (or '
                'proxy: https_proxy / http_proxy), or fetch the file '
                'elsewhere and pass --mirror with the folder or URL that '
                'holds it') from None
        with response:
            status = getattr(response, 'status', 200)
            total = None
            if status == 206:
                first, total = _content_range(
                    response.headers.get('Content-Range'))
                if first != have:  # not where we asked: start over
                    response.close()
                    os.remove(part)
                    last_problem = f'the server resumed at byte {first}'
                    continue
            else:  # a full response (also a server that ignores Range)
                have = 0
                length = response.headers.get('Content-Length')
                total = int(length) if length and length.isdigit() else None
            if have:
                print(f'resuming {url} at {have / 2**20:.1f} MiB',
                      file=stream, flush=True)
            else:
                print(f'downloading {url}', file=stream, flush=True)
            progress = _Progress(total, have, stream)
            done, lost = have, False
            try:
                with open(part, 'ab' if have else 'wb') as f:
                    while True:
                        chunk = response.read(1 << 20)
                        if not chunk:
                            break
                        f.write(chunk)
                        done += len(chunk)
                        progress.update(done)
            except (OSError, socket.timeout) as e:  # connection lost
                last_problem, lost = f'connection lost ({e})', True
            progress.update(done, final=True)
        if total is None and lost:
            continue
        if total is None or done == total:
            try:
                if check is not None:
                    check(part)
            except ZooError:
                os.remove(part)
                raise
            os.replace(part, dest)
            return dest
        if done > total:
            os.remove(part)
            raise ZooError(f'{url}: received {done} bytes, the server '
                           f'announced {total}: not the expected file')
        last_problem = (f'received {done} of the {total} bytes the server '
                        'announced')
    kept = (f'; the {osp.getsize(part)} bytes received are kept in {part}: '
            'run the same command again to resume') if osp.exists(part) \
        else ''
    raise ZooError(f'{url}: transfer incomplete after {attempts} requests '
                   f'({last_problem}){kept}')


def check_gzip(path: str) -> None:
    """A gzip file read to its end: CRC and length trailer checked (a
    truncated or padded file, or no gzip file at all, raises ZooError)."""
    try:
        with open(path, 'rb') as f:
            if f.read(2) != b'\x1f\x8b':
                raise ZooError(f'{path} is not a gzip file')
        with gzip.open(path, 'rb') as f:
            while f.read(1 << 22):
                pass
    except (OSError, EOFError, zlib.error) as e:
        raise ZooError(f'{path}: damaged gzip data ({e})') from None
