"""CRC-32C (Castagnoli) in numpy, as TensorFlow checksums checkpoints.

TensorFlow stores the CRC-32C of every tensor and of every block of a
checkpoint's ``.index`` table; the standard library has only
``zlib.crc32`` (another polynomial), and a byte-at-a-time Python loop is far
too slow for checkpoints of hundreds of MB. So a buffer is cut into many
equal lanes that a table-driven CRC advances in parallel, one 32-bit word of
every lane per numpy operation, and the lane CRCs are then merged with the
GF(2)-linear CRC combine operator (the CRC of ``A + B`` is the CRC of ``A``
shifted over ``len(B)`` zero bytes, xor the CRC of ``B``): in a whole block
by tables that shift each lane's state over the lanes after it at once.
Buffers under 32 KiB (and the ends of longer ones) are too short for lanes:
as the CRC is linear, their state is the xor of each byte's contribution at
its position, one table gather per KiB; a few bytes take a plain Python
loop over slice-by-4 tables. Throughput: ``docs/benchmarks.md``.
"""
import functools

import numpy as np

__all__ = ['crc32c', 'mask_crc32c', 'unmask_crc32c']

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
_MASK_DELTA = 0xA282EAD8
_LANE = 64  # bytes per lane of the vectorised CRC
# Bytes per vectorised pass: 8192 lanes, which (and whose states) stay in
# the CPU cache through the 16 word steps of a pass.
_BLOCK = 1 << 19
_ROW = 128  # lanes of a whole block merged per table lookup (_merge_block)
_LANES_MIN = 1 << 15  # shorter buffers go by position tables (1 KiB a step)
_POSITIONS = 1024  # bytes per position-table step (a 1 MiB table)
_SMALL = 16  # shorter buffers (and alignment heads) go in plain Python


def _byte_tables():
    """Slice-by-4 tables: ``t[k][b]`` = CRC of byte b + k zero bytes."""
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(_POLY), t >> 1)
    tables = [t.astype(np.uint32)]
    for _ in range(3):
        tables.append((tables[-1] >> 8) ^ tables[0][tables[-1] & 0xFF])
    return tables


_T = _byte_tables()
_T0 = _T[0].tolist()
# One 32-bit word: crc ^= word; crc = _TLO[crc & 0xffff] ^ _THI[crc >> 16].
_I16 = np.arange(65536, dtype=np.uint32)
_TLO = (_T[3][_I16 & 0xFF] ^ _T[2][_I16 >> 8]).astype('<u4')
_THI = (_T[1][_I16 & 0xFF] ^ _T[0][_I16 >> 8]).astype('<u4')
_TLO_LIST, _THI_LIST = _TLO.tolist(), _THI.tolist()


def _multmodp(a, b):
    """Product of two polynomials modulo the CRC polynomial (reflected)."""
    m, p = 1 << 31, 0
    while a:
        if a & m:
            p ^= b
            a ^= m
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


@functools.lru_cache(maxsize=None)
def _shift_tables(nbytes):
    """Tables of the map: CRC state -> state after ``nbytes`` zero bytes.

    Returns:
        A ``(4, 256)`` uint32 array ``t``; the map is ``t[0][c & 255] ^
        t[1][(c >> 8) & 255] ^ t[2][(c >> 16) & 255] ^ t[3][c >> 24]``.
    """
    # xn = x^(8 nbytes) mod P, by square-and-multiply (1 << 31 is x^0).
    xn, square, n = 1 << 31, 1 << 30, 8 * nbytes
    while n:
        if n & 1:
            xn = _multmodp(square, xn)
        square, n = _multmodp(square, square), n >> 1
    basis = np.array([_multmodp(xn, 1 << i) for i in range(32)],
                     dtype=np.uint32).reshape(4, 1, 8)
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    return np.bitwise_xor.reduce(np.where(bits == 1, basis, 0), axis=2)


def _shift(crc, nbytes):
    """Appends ``nbytes`` zero bytes to CRC state(s) (int or uint32 array)."""
    t = _shift_tables(nbytes)
    return (t[0][crc & 0xFF] ^ t[1][(crc >> 8) & 0xFF]
            ^ t[2][(crc >> 16) & 0xFF] ^ t[3][crc >> 24])


def _update_small(crc, a):
    """CRC state update over a uint8 array, in plain Python."""
    n4 = a.size & ~3
    for word in a[:n4].view('<u4').tolist():
        crc ^= word
        crc = _TLO_LIST[crc & 0xFFFF] ^ _THI_LIST[crc >> 16]
    for byte in a[n4:].tolist():
        crc = (crc >> 8) ^ _T0[(crc ^ byte) & 0xFF]
    return crc


@functools.lru_cache(maxsize=None)
def _position_table():
    """The contribution of every byte value at every position of a
    ``_POSITIONS``-byte buffer to its CRC state (state 0 before it).

    Returns:
        ``(table, offsets)``: flat uint32 ``table[offsets[i] + byte]`` for
        ``byte`` at position ``i`` of the last ``len(offsets) - i`` bytes:
        row ``k`` is ``_T[0]`` shifted over the ``k`` bytes after it.
    """
    table = np.empty((_POSITIONS, 256), np.uint32)
    table[0] = _T[0]
    done = 1
    while done < _POSITIONS:  # row k + done = row k shifted over done bytes
        count = min(done, _POSITIONS - done)
        table[done:done + count] = _shift(table[:count], done)
        done += count
    offsets = np.arange(_POSITIONS - 1, -1, -1, dtype=np.intp) * 256
    return table.reshape(-1), offsets


def _update_positions(crc, a):
    """CRC state update over a uint8 array of at least 4 bytes, by
    ``_POSITIONS`` bytes at a time: the CRC is linear, so the state is the
    xor of every byte's contribution looked up for its position, with the
    incoming state xored into the first four bytes."""
    table, offsets = _position_table()
    for start in range(0, a.size, _POSITIONS):
        chunk = a[start:start + _POSITIONS]
        if chunk.size < _SMALL:
            crc = _update_small(crc, chunk)
            continue
        index = offsets[_POSITIONS - chunk.size:] + chunk
        index[:4] ^= np.frombuffer(crc.to_bytes(4, 'little'), np.uint8)
        crc = int(np.bitwise_xor.reduce(table[index]))
    return crc


def _update_lanes(crc, block):
    """CRC state update over a 4-byte aligned block of whole lanes."""
    lanes = block.size // _LANE
    words = block.view('<u4').reshape(lanes, _LANE // 4)
    c = np.zeros(lanes, dtype='<u4')
    c[0] = crc
    halves = c.view('<u2').reshape(lanes, 2)
    lo, hi = np.empty_like(c), np.empty_like(c)
    for k in range(_LANE // 4):
        np.bitwise_xor(c, words[:, k], out=c)
        np.take(_TLO, halves[:, 0], out=lo)
        np.take(_THI, halves[:, 1], out=hi)
        np.bitwise_xor(lo, hi, out=c)
    return _merge_block(c) if c.size == _BLOCK // _LANE else _merge_tree(c)


def _merge_tree(c):
    """The CRC state of consecutive lanes of ``_LANE`` bytes from their
    states (all lanes but the first started from 0), by merging neighbours:
    state(A + B) = shift(state(A), len(B)) ^ state(B). The odd last lane of
    a level is set aside and appended at the end, outermost level first."""
    pending, length = [], _LANE
    while c.size > 1:
        if c.size & 1:
            pending.append((int(c[-1]), length))
            c = c[:-1]
        c = _shift(c[0::2], length) ^ c[1::2]
        length *= 2
    crc = int(c[0])
    for value, length in reversed(pending):
        crc = int(_shift(crc, length)) ^ value
    return crc


@functools.lru_cache(maxsize=None)
def _merge_tables(count, length):
    """Tables shifting lane ``s < count`` over the ``count - 1 - s`` lanes
    of ``length`` bytes after it.

    Returns:
        ``(offsets, table)``: ``table[offsets[k][s] + byte]`` is the part of
        lane ``s``'s shifted state due to its byte ``k`` being ``byte``.
    """
    identity = np.arange(256, dtype=np.uint32) << np.array(
        [[0], [8], [16], [24]], dtype=np.uint32)
    tables = [identity]
    for _ in range(count - 1):  # shift(t, a + b) == shift(shift(t, a), b)
        tables.append(_shift(tables[-1], length))
    table = np.stack(tables[::-1])  # (lane, byte k, byte value)
    offsets = (np.arange(count) * 1024 + np.arange(0, 1024, 256)[:, None])
    return offsets, table.reshape(-1)


def _merge_rows(c, length):
    """Merges every row of ``c`` (rows of consecutive lanes of ``length``
    bytes) into one state, four table lookups per lane."""
    offsets, table = _merge_tables(c.shape[1], length)
    states = c.view(np.uint8).reshape(c.shape + (4, ))
    merged = table[offsets[0] + states[..., 0]]
    for k in range(1, 4):
        merged ^= table[offsets[k] + states[..., k]]
    return np.bitwise_xor.reduce(merged, axis=1)


def _merge_block(c):
    """The lane merge of a whole block, as rows of ``_ROW`` lanes and then
    the rows: two rounds of lookups instead of a tree of ``log2(lanes)``
    levels of shifts."""
    rows = _merge_rows(c.reshape(-1, _ROW), _LANE)
    return int(_merge_rows(rows.reshape(1, -1), _LANE * _ROW)[0])


def _as_uint8(data):
    """Flat uint8 view of a bytes-like object or array (copied if strided)."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli) as TensorFlow's ``crc32c::Value``/``Extend``.

    Args:
        data: bytes, bytearray, memoryview, mmap or numpy array (raw bytes).
        crc: CRC of preceding data to extend:
            ``crc32c(a + b) == crc32c(b, crc32c(a))``.

    Returns:
        The (unmasked) CRC as an int.
    """
    a = _as_uint8(data)
    state = crc ^ 0xFFFFFFFF
    if a.size >= _LANES_MIN:
        head = -a.__array_interface__['data'][0] % 4  # word-align the rest
        state = _update_small(state, a[:head])
        a = a[head:]
        end = a.size - a.size % _LANE
        for start in range(0, end, _BLOCK):
            state = _update_lanes(state, a[start:min(start + _BLOCK, end)])
        a = a[end:]
    if a.size < _SMALL:
        return _update_small(state, a) ^ 0xFFFFFFFF
    return _update_positions(state, a) ^ 0xFFFFFFFF


def mask_crc32c(crc):
    """Masks a CRC as TensorFlow stores it (``crc32c::Mask``)."""
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    return (rotated + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc32c(masked):
    """Inverse of :func:`mask_crc32c`."""
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF
