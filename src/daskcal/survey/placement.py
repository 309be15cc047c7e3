"""Placement: which site runs which observation (pure functions, no I/O).

The policy, for each waiting observation in turn:

1. the site holding its data (its ``location``), if that site is enabled and has a free
   slot: no staging;
2. else, among the enabled sites with a free slot, the one where its data arrives
   soonest: ``(queued_bytes + nbytes) / bandwidth`` seconds, where ``queued_bytes`` are
   the bytes already being staged into that site (its staging queue); ties go to the
   site with more free slots, then to the name;
3. else it waits (no site has room): it is placed at a later call.

An observation being retried after a failure names the site it failed on (``avoid``):
that site is chosen only when no other site has a free slot, even if it holds the data.

Each placement takes a slot and adds to the site's staging queue, so the observations
of one call spread over the sites. Disabled sites (too many failures in a row) take
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SiteLoad:
    """What placement needs to know of a site now.

    Attributes
    ----------
    name : str
    capacity : int
        Observations the site runs at once.
    bandwidth : float
        Staging speed into the site, bytes per second (> 0).
    active : int
        Observations staging or running there now.
    queued_bytes : int
        Bytes being staged into the site now (its staging queue).
    disabled : bool
        A disabled site takes no observation.
    """

    name: str
    capacity: int
    bandwidth: float
    active: int = 0
    queued_bytes: int = 0
    disabled: bool = False

    @property
    def free(self) -> int:
        """Free slots (0 when disabled)."""
        return 0 if self.disabled else max(0, self.capacity - self.active)


@dataclass(frozen=True)
class Waiting:
    """An observation waiting for a site.

    Attributes
    ----------
    name : str
    nbytes : int
        Bytes of its inputs (what staging copies).
    location : str or None
        The site holding its data (None: no site does).
    avoid : str or None
        The site its last attempt failed on: used only if no other site has room.
    """

    name: str
    nbytes: int
    location: str | None = None
    avoid: str | None = None


def staging_seconds(obs: Waiting, site: SiteLoad) -> float:
    """Estimated seconds until ``obs``'s data is on ``site`` (0 at its own location).

    Parameters
    ----------
    obs : Waiting
    site : SiteLoad

    Returns
    -------
    float
        ``0`` if ``site`` holds the data, else ``(site.queued_bytes + obs.nbytes) /
        site.bandwidth``.
    """
    if obs.location == site.name:
        return 0.0
    return (site.queued_bytes + obs.nbytes) / site.bandwidth


def choose_site(obs: Waiting, sites: Sequence[SiteLoad]) -> SiteLoad | None:
    """The site for one observation now, by the module's policy (None: none has room).

    Parameters
    ----------
    obs : Waiting
    sites : sequence of SiteLoad

    Returns
    -------
    SiteLoad or None
    """
    open_sites = [s for s in sites if s.free > 0]
    if any(s.name != obs.avoid for s in open_sites):
        open_sites = [s for s in open_sites if s.name != obs.avoid]
    home = next((s for s in open_sites if s.name == obs.location), None)
    if home is not None:
        return home
    if not open_sites:
        return None
    return min(open_sites, key=lambda s: (staging_seconds(obs, s), -s.free, s.name))


def place(waiting: Sequence[Waiting], sites: Sequence[SiteLoad]) -> dict[str, str]:
    """Place waiting observations on sites with free slots.

    Parameters
    ----------
    waiting : sequence of Waiting
        In order of priority (the first are placed first).
    sites : sequence of SiteLoad
        Every site, with its current load.

    Returns
    -------
    dict of str to str
        Observation name -> site name, for those placed now; the others wait.
    """
    loads = {s.name: s for s in sites}
    out: dict[str, str] = {}
    for obs in waiting:
        site = choose_site(obs, list(loads.values()))
        if site is None:
            continue
        out[obs.name] = site.name
        queued = site.queued_bytes + (0 if obs.location == site.name else obs.nbytes)
        loads[site.name] = replace(site, active=site.active + 1, queued_bytes=queued)
    return out


def any_site_left(sites: Sequence[SiteLoad]) -> bool:
    """Whether any site is enabled (else waiting observations can never run)."""
    return any(not s.disabled for s in sites)


__all__ = ["SiteLoad", "Waiting", "any_site_left", "choose_site", "place", "staging_seconds"]
