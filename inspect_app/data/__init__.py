"""Getting pixels in: image decoding, folder layouts, splits, synthetic sample data, sources and datasets.

Modules here import only the standard library, numpy, OpenCV and ``inspect_app.config/records/errors``
(``dataset`` alone adds torch), so importing this package stays cheap; import the submodule you need.
"""
