"""A small stand-in for dataclasses: ``@record`` classes get __init__, __eq__ and __repr__ from
their annotated fields.

Why not dataclasses: importing it (and inspect behind it) costs about 15 ms, which is half of
what a whole `sendmail -t` submission may cost.  Here no code is generated: one generic
__init__ reads the field list.  ``factory(list)`` stands for a fresh mutable default;
``frozen=True`` makes instances hashable and refuses assignment after __init__.
"""

from __future__ import annotations


class factory:  # noqa: N801 - reads as a keyword in class bodies
    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


def record(cls=None, *, frozen: bool = False):
    def wrap(cls):
        names = tuple(n for n in cls.__dict__.get("__annotations__", {}) if not n.startswith("__"))
        defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
        for n, d in defaults.items():
            if isinstance(d, factory):
                delattr(cls, n)

        plain = {n: d for n, d in defaults.items() if not isinstance(d, factory)}
        made = tuple((n, d.make) for n, d in defaults.items() if isinstance(d, factory))
        known, count = frozenset(names), len(names)
        leading = [frozenset(names[:i]) for i in range(count + 1)]  # the names given by position

        def __init__(self, *args, **kwargs):
            # one dict built and stored at once: queue listings make hundreds of thousands of these
            given = len(args)
            if given > count:
                raise TypeError(f"{cls.__name__}() takes {count} arguments, {given} given")
            values = dict(plain)
            if given:
                values.update(zip(names, args, strict=False))
            if kwargs:
                if not known.issuperset(kwargs) or not leading[given].isdisjoint(kwargs):
                    raise TypeError(f"{cls.__name__}() got unexpected arguments {sorted(kwargs)}")
                values.update(kwargs)
            for n, make in made:
                if n not in values:
                    values[n] = make()
            if len(values) != count:
                missing = next(n for n in names if n not in values)
                raise TypeError(f"{cls.__name__}() missing argument {missing!r}")
            self.__dict__.update(values)  # also for frozen records: their __setattr__ refuses

        def __eq__(self, other):
            if type(other) is not type(self):
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in names)

        def __repr__(self):
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names if not n.startswith("_"))
            return f"{cls.__name__}({inner})"

        cls.__init__, cls.__eq__, cls.__repr__ = __init__, __eq__, __repr__
        cls.__record_fields__ = names
        if frozen:
            def __setattr__(self, name, value):
                raise AttributeError(f"{cls.__name__} is frozen")

            cls.__setattr__ = __setattr__
            cls.__hash__ = lambda self: hash(tuple(getattr(self, n) for n in names))
        else:
            cls.__hash__ = None
        return cls

    return wrap(cls) if cls is not None else wrap
