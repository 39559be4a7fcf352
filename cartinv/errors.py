"""The one base class of every error cartinv raises on purpose, and the two generic kinds that need no module.

Everything cartinv refuses (a request it will not derive, a file that is not what it claims, an argument outside
its domain, data a kernel cannot evaluate, a backend that cannot be built) raises a subclass of ``CartinvError``
with a one-line message naming the field or argument. Each subclass also derives from the builtin that fits
(ValueError for bad values, RuntimeError for an unusable environment), so ``except ValueError`` keeps working.
The command line prints a CartinvError as ``cartinv: error: <message>``; any other exception is a bug.
"""

from __future__ import annotations


class CartinvError(Exception):
    """Base class: bad input, a bad file or a refused request, described in one line."""


class ArgumentError(CartinvError, ValueError):
    """An argument of a cartinv function or class lies outside its domain (the message names it)."""


class FileFormatError(CartinvError, ValueError):
    """A saved model or exported file that cartinv cannot read: another format, version or a malformed field."""
