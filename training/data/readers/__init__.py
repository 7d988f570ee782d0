"""Readers of standard datasets in their published formats, each a ``SampleSource``
(``training.data.loader``) yielding the project's ``Sample`` with only the labels the format
has for the asset being trained (``sources.open_sources`` picks one per ``data.train`` entry)."""
