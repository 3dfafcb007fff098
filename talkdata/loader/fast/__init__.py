"""The loader's measured fast paths, one small module each, and what each is checked against.

* :mod:`.tar`: the shard tar reader (headers parsed directly, unwanted members seeked past; the
  header checksum summed with Adler-32) - reference ``tarfile``;
* :mod:`.npy`: ``.npy`` members decoded without ``np.load``'s header parsing - reference
  ``np.lib.format.read_array``;
* :mod:`.interp`: ``np.interp`` for all channels at once - reference ``np.interp`` per channel.

``tests/test_loader_internals.py`` asserts equality with each reference on real shards; the gain of
each is measured by ``benchmarks/loader.py``. These modules import only the standard library, numpy
and :mod:`talkdata.loader.damage`.
"""
