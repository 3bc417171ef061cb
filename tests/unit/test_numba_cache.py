"""Saves into Numba's cache from several writers at once keep every entry."""

import threading
import time

import pytest
from numba.core.caching import IndexDataCacheFile

from convbench_kernels import numba_cache


def _save_at_once(save, cache_file, monkeypatch, writers=6):
    """``writers`` threads saving a distinct key each into one index, each index read slowed
    so that every unlocked read-add-write would overlap the others."""
    read = IndexDataCacheFile._load_index

    def slow_read(self):
        index = read(self)
        time.sleep(0.2)
        return index

    monkeypatch.setattr(IndexDataCacheFile, "_load_index", slow_read)
    threads = [threading.Thread(target=save, args=(cache_file, f"sig{i}", f"code{i}"))
               for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.setattr(IndexDataCacheFile, "_load_index", read)
    return {f"sig{i}": cache_file.load(f"sig{i}") for i in range(writers)}


@pytest.mark.skipif(not numba_cache.lock_cache_saves(), reason="no flock on this platform")
def test_locked_saves_keep_every_signature_with_its_own_code(tmp_path, monkeypatch):
    assert getattr(IndexDataCacheFile.save, "locked", False)  # on since the kernels' import
    cache_file = IndexDataCacheFile(str(tmp_path), "kernel", source_stamp=("stamp", 1))
    loaded = _save_at_once(IndexDataCacheFile.save, cache_file, monkeypatch)
    assert loaded == {f"sig{i}": f"code{i}" for i in range(6)}


@pytest.mark.skipif(not numba_cache.lock_cache_saves(), reason="no flock on this platform")
def test_numba_saves_without_the_lock_lose_or_mix_entries(tmp_path, monkeypatch):
    """The race the lock removes, shown on Numba's own save."""
    cache_file = IndexDataCacheFile(str(tmp_path), "kernel", source_stamp=("stamp", 1))
    loaded = _save_at_once(IndexDataCacheFile.save.__wrapped__, cache_file, monkeypatch)
    assert loaded != {f"sig{i}": f"code{i}" for i in range(6)}
