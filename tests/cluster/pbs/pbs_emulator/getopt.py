"""POSIX getopt(3) as glibc's behaves, so option errors read exactly like PBS's.

PBS commands parse with getopt(), which prints ``qsub: invalid option -- 'b'`` for each bad
character and keeps going; the command then prints its usage. ``--bogus`` is therefore two
errors (``-`` and ``b``) before ``-o`` swallows ``gus``, as the reference shows. Parsing stops
after ``--``; qsub also stops at its script operand (what follows belongs to the script), the
other commands accept options after operands, as glibc's permuting getopt does.
"""

from __future__ import annotations


class Parsed:
    """Options in order, the operands, and getopt's error lines."""

    def __init__(self) -> None:
        self.options: list[tuple[str, str]] = []
        self.operands: list[str] = []
        self.errors: list[str] = []
        self.dashdash = False

    def has(self, letter: str) -> bool:
        return any(o == letter for o, _ in self.options)

    def last(self, letter: str) -> str | None:
        values = [v for o, v in self.options if o == letter]
        return values[-1] if values else None

    def all(self, letter: str) -> list[str]:
        return [v for o, v in self.options if o == letter]


def getopt(prog: str, argv: list[str], optstring: str, permute: bool = True) -> Parsed:
    """Parse `argv` against `optstring` ("a:b" style) the way glibc getopt does."""
    takes_arg = {
        c for i, c in enumerate(optstring) if i + 1 < len(optstring) and optstring[i + 1] == ":"
    }
    known = set(optstring.replace(":", ""))
    parsed = Parsed()
    position = 0
    while position < len(argv):
        arg = argv[position]
        if arg == "--":
            parsed.dashdash = True
            position += 1
            break
        if not arg.startswith("-") or arg == "-":
            if not permute:
                break
            parsed.operands.append(arg)
            position += 1
            continue
        chars = arg[1:]
        offset = 0
        while offset < len(chars):
            letter = chars[offset]
            offset += 1
            if letter not in known:
                parsed.errors.append(f"{prog}: invalid option -- '{letter}'")
                continue
            if letter in takes_arg:
                if offset < len(chars):
                    value = chars[offset:]
                elif position + 1 < len(argv):
                    position += 1
                    value = argv[position]
                else:
                    parsed.errors.append(f"{prog}: option requires an argument -- '{letter}'")
                    break
                parsed.options.append((letter, value))
                break
            parsed.options.append((letter, ""))
        position += 1
    parsed.operands += argv[position:]
    return parsed
