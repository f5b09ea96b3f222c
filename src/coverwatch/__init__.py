"""coverwatch: keeps guarded posts covered.

Site-as-code cover rules, an exact event-time cover engine, live supervision
and tamper-evident evidence. The pure core lives in ``domain``, ``engine`` and
``planning``; everything that touches files, clocks or networks is an adapter.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
