"""Protobuf wire format: varints and the fields of the few messages a
bundle's metadata holds, decoded without the protobuf library."""
from .errors import Corrupt


def varint(buf, pos):
    """Decodes the varint at ``buf[pos]``; returns ``(value, next_pos)``."""
    if pos < len(buf) and buf[pos] < 0x80:  # one byte: most of them
        return buf[pos], pos + 1
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise Corrupt('truncated varint')
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise Corrupt('varint longer than 10 bytes')


def pb_parse(buf):
    """Parses a protobuf message into ``{field: [values]}`` (int or bytes)."""
    fields, pos = {}, 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        wire = key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire in (1, 2, 5):
            if wire == 2:
                size, pos = varint(buf, pos)
            else:
                size = 8 if wire == 1 else 4
            if pos + size > len(buf):
                raise Corrupt('truncated protobuf field')
            value = buf[pos:pos + size]
            if wire != 2:
                value = int.from_bytes(value, 'little')
            pos += size
        else:
            raise Corrupt(f'unsupported protobuf wire type {wire}')
        fields.setdefault(key >> 3, []).append(value)
    return fields


def pb_int(fields, number, signed=False):
    """Last value of an integer field (proto3 semantics; default 0)."""
    value = fields.get(number, [0])[-1]
    if not isinstance(value, int):
        raise Corrupt(f'protobuf field {number} is not an integer')
    return value - (1 << 64) if signed and value >= 1 << 63 else value


def pb_ints(fields, number):
    """All values of a repeated integer field, packed or not."""
    values = []
    for value in fields.get(number, []):
        if isinstance(value, int):
            values.append(value)
            continue
        pos = 0
        while pos < len(value):
            item, pos = varint(value, pos)
            values.append(item)
    return values


def pb_messages(fields, number):
    """The parsed sub-messages of a (repeated) message field."""
    values = fields.get(number, [])
    if not all(isinstance(v, bytes) for v in values):
        raise Corrupt(f'protobuf field {number} is not a message')
    return [pb_parse(v) for v in values]
