"""Sky models: the :class:`SkyModel` container, the A-team, BBS/makesourcedb files, catalogues.

Public names load lazily (importing ``daskcal.sky`` imports nothing heavy).
"""

from __future__ import annotations

from daskcal._lazy import lazy_exports

_EXPORTS = {
    # model
    "SkyModel": "model", "SkyModelError": "model",
    # A-team
    "ATEAM": "ateam", "ateam_sky_model": "ateam",
    # makesourcedb / BBS text format
    "BBSFormatError": "bbs", "read_bbs": "bbs", "read_bbs_patches": "bbs", "parse_bbs": "bbs",
    "write_bbs": "bbs", "format_bbs": "bbs", "parse_angle": "bbs", "format_ra": "bbs",
    "format_dec": "bbs",
    # catalogues and patches
    "CatalogueError": "catalogue", "cone": "catalogue", "cone_from_file": "catalogue",
    "read_catalogue": "catalogue", "read_csv_catalogue": "catalogue",
    "PatchSummary": "catalogue", "patch_summary": "catalogue",
    "group_by_brightest": "catalogue",
    # facets
    "Facets": "facets", "FacetError": "facets", "make_facets": "facets",
    "write_ds9": "facets", "read_ds9": "facets",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
