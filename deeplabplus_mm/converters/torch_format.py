"""Writes ``torch.save``'s file format from numpy arrays, without torch.

A converted checkpoint is a plain dict of tensors and plain data; writing it
needs no torch, and importing torch is most of a converter's run time (and
a few hundred MiB of its memory). The format is torch's zip serialization
(``torch.save``'s default since torch 1.6, file format version 3): an
uncompressed zip whose ``<archive>/data.pkl`` is a protocol-2 pickle in
which every tensor is ``torch._utils._rebuild_tensor_v2`` of a storage
stored as ``<archive>/data/<key>`` (little-endian raw bytes, each record's
data 64-byte aligned as torch aligns it), plus ``byteorder`` and ``version``
records. The pickle holds only what ``torch.load(weights_only=True)``
accepts: dicts, lists, tuples, str, int, float, bool, None and tensors.

Tensors are written one at a time (:meth:`TorchFileWriter.add_tensor`), so
a converter never holds more than one of them.
"""
import os
import struct
import zipfile
from typing import Any, NamedTuple, Tuple

import numpy as np

# numpy dtype -> torch's legacy storage class (what torch.save pickles).
_STORAGE_TYPES = {
    np.dtype('float32'): 'FloatStorage',
    np.dtype('float64'): 'DoubleStorage',
    np.dtype('float16'): 'HalfStorage',
    np.dtype('int64'): 'LongStorage',
    np.dtype('int32'): 'IntStorage',
    np.dtype('int16'): 'ShortStorage',
    np.dtype('int8'): 'CharStorage',
    np.dtype('uint8'): 'ByteStorage',
    np.dtype('bool'): 'BoolStorage',
}
_ALIGNMENT = 64  # torch's PyTorchFileWriter aligns record data to 64 bytes
_FILE_FORMAT_VERSION = b'3\n'


class TensorRef(NamedTuple):
    """A tensor already written to the file, to put in the pickled object."""
    key: str  # storage record name under data/
    storage_type: str
    shape: Tuple[int, ...]


class TorchFileWriter:
    """Writes a ``torch.load``-able file: tensors first, then the object.

    Usage::

        with TorchFileWriter(path) as writer:
            ref = writer.add_tensor(array)
            writer.finish(dict(state_dict={'w': ref}, meta={...}))

    The file is complete only after :meth:`finish`; callers write to a
    temporary name and rename it.
    """

    def __init__(self, path: str, archive_name: str = 'archive'):
        self.path = os.fspath(path)
        self.prefix = archive_name + '/'
        self.zip = zipfile.ZipFile(self.path, 'w', zipfile.ZIP_STORED,
                                   allowZip64=True)
        self.num_tensors = 0
        self.finished = False

    def _write_record(self, name: str, data) -> None:
        info = zipfile.ZipInfo(self.prefix + name, date_time=(1980, 1, 1, 0,
                                                               0, 0))
        info.compress_type = zipfile.ZIP_STORED
        # Pad the local header's extra field (id 'FB', as torch does) so
        # that the record's data starts at a multiple of 64 bytes.
        header = 30 + len(info.filename.encode('utf-8')) + 4
        pad = -(self.zip.fp.tell() + header) % _ALIGNMENT
        info.extra = struct.pack('<HH', 0x4246, pad) + b'Z' * pad
        self.zip.writestr(info, data)

    def add_tensor(self, array: np.ndarray) -> TensorRef:
        """Writes ``array``'s bytes as a new storage; returns the reference
        to place in the object given to :meth:`finish`."""
        array = np.asarray(array)
        storage_type = _STORAGE_TYPES.get(array.dtype.newbyteorder('='))
        if storage_type is None:
            raise TypeError(f'cannot store dtype {array.dtype} as a tensor')
        # little-endian, C order (np.ascontiguousarray would make a 0-d
        # array 1-d)
        array = np.require(array, array.dtype.newbyteorder('<'), 'C')
        key = str(self.num_tensors)
        self._write_record(f'data/{key}',
                           memoryview(array.reshape(-1)).cast('B'))
        self.num_tensors += 1
        return TensorRef(key, storage_type,
                         tuple(int(d) for d in array.shape))

    def finish(self, obj: Any) -> None:
        """Writes the pickled ``obj`` (in which :class:`TensorRef` stand for
        tensors) and the format records, and closes the file."""
        self._write_record('data.pkl', _dumps(obj))
        self._write_record('byteorder', b'little')
        self._write_record('version', _FILE_FORMAT_VERSION)
        self.zip.close()
        self.finished = True

    def close(self) -> None:
        self.zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _dumps(obj: Any) -> bytes:
    """Protocol-2 pickle of plain data and :class:`TensorRef`, spelled out
    opcode by opcode (the classes it names are torch's, which is not
    imported here)."""
    out = bytearray(b'\x80\x02')  # PROTO 2

    def save(o):
        if o is None:
            out.extend(b'N')
        elif o is True:
            out.extend(b'\x88')
        elif o is False:
            out.extend(b'\x89')
        elif isinstance(o, (int, np.integer)):
            o = int(o)
            if 0 <= o < 256:
                out.extend(b'K' + bytes([o]))
            elif 0 <= o < 65536:
                out.extend(b'M' + struct.pack('<H', o))
            elif -2**31 <= o < 2**31:
                out.extend(b'J' + struct.pack('<i', o))
            else:
                raw = o.to_bytes((o.bit_length() + 8) // 8, 'little',
                                 signed=True)
                out.extend(b'\x8a' + bytes([len(raw)]) + raw)
        elif isinstance(o, (float, np.floating)):
            out.extend(b'G' + struct.pack('>d', float(o)))
        elif isinstance(o, str):
            raw = o.encode('utf-8', 'surrogatepass')
            out.extend(b'X' + struct.pack('<I', len(raw)) + raw)
        elif isinstance(o, TensorRef):
            save_tensor(o)
        elif isinstance(o, tuple):
            out.extend(b'(')
            for item in o:
                save(item)
            out.extend(b't')
        elif isinstance(o, list):
            out.extend(b']')
            if o:
                out.extend(b'(')
                for item in o:
                    save(item)
                out.extend(b'e')  # APPENDS
        elif isinstance(o, dict):
            out.extend(b'}')
            if o:
                out.extend(b'(')
                for key, value in o.items():
                    save(key)
                    save(value)
                out.extend(b'u')  # SETITEMS
        else:
            raise TypeError(f'cannot pickle {type(o).__name__} here')

    def save_tensor(ref):
        numel = 1
        for d in ref.shape:
            numel *= d
        strides, step = [], 1
        for d in reversed(ref.shape):
            strides.insert(0, step)
            step *= d
        out.extend(b'ctorch._utils\n_rebuild_tensor_v2\n(')
        # persistent id of the storage: ('storage', type, key, location,
        # numel), loaded by BINPERSID
        out.extend(b'(')
        save('storage')
        out.extend(f'ctorch\n{ref.storage_type}\n'.encode())
        save(ref.key)
        save('cpu')
        save(numel)
        out.extend(b'tQ')
        save(0)  # storage offset
        save(tuple(ref.shape))
        save(tuple(strides))
        save(False)  # requires_grad
        out.extend(b'ccollections\nOrderedDict\n)R')  # backward hooks
        out.extend(b'tR')

    save(obj)
    out.extend(b'.')
    return bytes(out)
