"""Numba's on-disk cache made safe for several processes saving at once.

Numba keeps one index file per cached function and, for a new specialisation, reads the
index, adds the entry (naming a data file not yet listed) and writes it back, without a
lock.  Two processes saving different specialisations of one function at once (pytest's
workers, a cluster's workers on one host, `convbench compile`'s pool) can both pick the same
data file and leave the index naming the other's code for a signature.  `lock_cache_saves`
wraps every save in an exclusive ``flock`` of a file in the cache directory, so each
read-add-write is whole; loads need no lock (files are replaced atomically, and a name once
listed is never given to another signature).  Saves are rare (one a compilation), so the
lock costs nothing measurable.
"""

import contextlib
import os


@contextlib.contextmanager
def _locked(directory):
    import fcntl

    with open(os.path.join(directory, "convbench-save.lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def lock_cache_saves():
    """Lock every save into Numba's cache of this process (POSIX; elsewhere saves stay as
    Numba makes them).  Idempotent.  Returns whether saves are locked."""
    if os.name != "posix":
        return False
    from numba.core.caching import IndexDataCacheFile

    save = IndexDataCacheFile.save
    if getattr(save, "locked", False):
        return True

    def locked_save(self, key, data):
        with _locked(self._cache_path):
            save(self, key, data)

    locked_save.locked = True
    locked_save.__wrapped__ = save
    IndexDataCacheFile.save = locked_save
    return True
