"""Finding and loading site profiles: :func:`load_site` and the kinds of :class:`Site`."""

from __future__ import annotations

import os
from pathlib import Path

from daskcal import DaskcalError
from daskcal.cluster.base import Site
from daskcal.cluster.kubernetes import KubernetesSite
from daskcal.cluster.local import AddressSite, LocalSite
from daskcal.cluster.profile import SiteProfile, load_profile, profile_from_dict
from daskcal.cluster.slurm import SlurmSite

#: The class of each kind of site.
SITE_CLASSES: dict[str, type[Site]] = {
    cls.kind: cls for cls in (LocalSite, SlurmSite, KubernetesSite, AddressSite)
}


def site_search_path() -> list[Path]:
    """Directories searched for ``NAME.yaml`` when a site is given by name, in order.

    Returns
    -------
    list of pathlib.Path
        The entries of ``$DASKCAL_SITE_PATH`` (``os.pathsep``-separated), then
        ``./configs/sites``, then ``~/.config/daskcal/sites``.
    """
    dirs = [Path(p) for p in os.environ.get("DASKCAL_SITE_PATH", "").split(os.pathsep) if p]
    return [*dirs, Path("configs", "sites"), Path.home() / ".config" / "daskcal" / "sites"]


def site_from_profile(profile: SiteProfile, source: str | None = None) -> Site:
    """The :class:`Site` of a validated profile.

    Parameters
    ----------
    profile : SiteProfile
        A validated profile.
    source : str, optional
        Where it came from, for messages.

    Returns
    -------
    Site
        A ``LocalSite``, ``SlurmSite``, ``KubernetesSite`` or ``AddressSite``.
    """
    return SITE_CLASSES[profile.kind](profile, source)


def site_from_dict(data: dict | None, source: str = "<profile>") -> Site:
    """The :class:`Site` of a profile given as a mapping (validated here).

    Parameters
    ----------
    data : dict or None
        The profile, as its YAML file would hold it; ``None``: the default local site.
    source : str
        Named in error messages.

    Returns
    -------
    Site

    Raises
    ------
    daskcal.DaskcalError
        If the profile is invalid (every problem on one line).
    """
    return site_from_profile(profile_from_dict(data, source), source)


def _looks_like_path(text: str) -> bool:
    return any(sep in text for sep in ("/", os.sep)) or text.endswith((".yaml", ".yml"))


def load_site(path_or_name: str | os.PathLike[str] | None = None) -> Site:
    """Load a site profile and return its :class:`Site`.

    Parameters
    ----------
    path_or_name : str or path-like, optional
        A YAML file, or the name of one (``NAME.yaml``) in :func:`site_search_path`.
        ``None``: ``$DASKCAL_SITE`` if set, else the default local site. The name
        ``local`` without such a file is the default local site too.

    Returns
    -------
    Site
        Ready to start: ``with site.client() as client: ...``.

    Raises
    ------
    daskcal.DaskcalError
        If the file is missing or invalid: one line naming it and every problem.

    Examples
    --------
    >>> site = load_site("configs/sites/slurm-example.yaml")  # doctest: +SKIP
    >>> with site.client(wait_for_workers=2) as client:       # doctest: +SKIP
    ...     result = graph.compute()
    """
    if path_or_name is None:
        path_or_name = os.environ.get("DASKCAL_SITE") or None
        if path_or_name is None:
            return site_from_dict(None, "<default local site>")
    text = os.fspath(path_or_name)
    if isinstance(path_or_name, os.PathLike) or _looks_like_path(text) or Path(text).is_file():
        return site_from_profile(load_profile(text), text)
    dirs = site_search_path()
    for directory in dirs:
        for suffix in (".yaml", ".yml"):
            candidate = directory / f"{text}{suffix}"
            if candidate.is_file():
                return site_from_profile(load_profile(candidate), str(candidate))
    if text == "local":
        return site_from_dict(None, "<default local site>")
    raise DaskcalError(f"site {text!r}: no {text}.yaml in " + ", ".join(map(str, dirs)))
