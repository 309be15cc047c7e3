"""The typed configuration of a simulated observation (rendered as a form by the portal)."""

from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_LINEAR = ("XX", "XY", "YX", "YY")
_CIRCULAR = ("RR", "RL", "LR", "LL")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LofarArrayConfig(_Model):
    """Which LOFAR HBA stations to use."""

    n_core: int = Field(24, ge=0, le=24, description="Number of core stations (the first six "
                        "are the superterp); each gives two HBA ears when split_core is set.")
    n_remote: int = Field(14, ge=0, le=14, description="Number of remote stations, nearest "
                          "first (3.5 to 60 km from the core).")
    n_international: int = Field(0, ge=0, le=14, description="Number of international "
                                 "stations (250 to 1100 km away).")
    split_core: bool = Field(True, description="Core stations as two HBA ears (CS001HBA0, "
                             "CS001HBA1) rather than one joined station (CS001HBA).")


class VlaArrayConfig(_Model):
    """Which VLA configuration to use."""

    configuration: Literal["A", "B", "C", "D"] = Field(
        "D", description="VLA configuration (arm length 21, 6.4, 1.95 or 0.6 km).")


class ComponentConfig(_Model):
    """One sky component given explicitly."""

    name: str = Field(description="Unique component name.")
    ra_deg: float = Field(description="J2000 right ascension, degrees.")
    dec_deg: float = Field(ge=-90, le=90, description="J2000 declination, degrees.")
    flux_jy: float = Field(description="Stokes I flux density at ref_freq_hz, Jy.")
    q_jy: float = Field(0.0, description="Stokes Q at ref_freq_hz, Jy.")
    u_jy: float = Field(0.0, description="Stokes U at ref_freq_hz, Jy.")
    v_jy: float = Field(0.0, description="Stokes V at ref_freq_hz, Jy.")
    ref_freq_hz: float = Field(150e6, gt=0, description="Reference frequency of the spectrum, "
                               "Hz.")
    spectral_index: list[float] = Field(
        default_factory=lambda: [-0.7], description="Log-polynomial spectral terms a0, a1, ...: "
        "S(f) = S0 (f/f0)^(a0 + a1 log10(f/f0) + ...).")
    major_arcsec: float = Field(0.0, ge=0, description="Gaussian major-axis FWHM, arcsec (0 "
                                "for a point source).")
    minor_arcsec: float = Field(0.0, ge=0, description="Gaussian minor-axis FWHM, arcsec.")
    pa_deg: float = Field(0.0, description="Position angle of the major axis, north through "
                          "east, degrees.")
    patch: str = Field("", description="Patch (direction group) name.")

    @model_validator(mode="after")
    def _minor_not_above_major(self):
        if self.minor_arcsec > self.major_arcsec:
            raise ValueError(f"component {self.name}: minor_arcsec exceeds major_arcsec")
        return self


class SkyConfig(_Model):
    """The simulated sky."""

    preset: Literal["random-field", "point-at-centre", "none"] = Field(
        "random-field", description="random-field: n_sources random point and Gaussian "
        "sources around the pointing; point-at-centre: one 1 Jy point at the phase centre; "
        "none: only the explicit components (and the A-team).")
    n_sources: int = Field(20, ge=0, description="Number of sources of the random field.")
    field_radius_deg: float | None = Field(
        None, gt=0, description="Radius of the random field, degrees (default: the primary "
        "beam FWHM of the largest antenna at the lowest frequency).")
    flux_min_jy: float = Field(0.05, gt=0, description="Lowest flux of the random field "
                               "(power law dN/dS ~ S^-1.6 above it), Jy.")
    flux_max_jy: float = Field(5.0, gt=0, description="Highest flux of the random field, Jy.")
    gaussian_fraction: float = Field(0.2, ge=0, le=1, description="Fraction of random sources "
                                     "that are Gaussians (5 to 60 arcsec FWHM).")
    spectral_index_mean: float = Field(-0.7, description="Mean spectral index of the random "
                                       "sources.")
    spectral_index_std: float = Field(0.2, ge=0, description="Scatter of the spectral index of "
                                      "the random sources.")
    components: list[ComponentConfig] = Field(default_factory=list, description="Explicit "
                                              "components added to the preset.")
    ateam: bool = Field(False, description="Add Cas A, Cyg A, Tau A and Vir A (see "
                        "daskcal.sky.ateam); use with the beam so that they enter through "
                        "the sidelobes and set below the horizon.")

    @model_validator(mode="after")
    def _flux_range(self):
        if self.flux_max_jy < self.flux_min_jy:
            raise ValueError("sky: flux_max_jy is below flux_min_jy")
        return self


class GainConfig(_Model):
    """Direction-independent antenna gains (per receptor, smooth in time and frequency)."""

    enabled: bool = Field(True, description="Corrupt the data with antenna gains.")
    amplitude_rms: float = Field(0.05, ge=0, description="Rms of the log-amplitude (0.05 is "
                                 "about 5 per cent).")
    phase_rms_deg: float = Field(30.0, ge=0, description="Rms of the time-variable phase, "
                                 "degrees (on top of a random constant phase).")
    time_scale_s: float = Field(1800.0, gt=0, description="Typical period of the time "
                                "variations, s.")
    freq_scale_hz: float | None = Field(None, gt=0, description="Typical period of the "
                                        "bandpass ripple, Hz (default: the bandwidth).")
    delay_rms_ns: float = Field(2.0, ge=0, description="Rms of the per-antenna delay (phase "
                                "slope over frequency), ns.")


class ScreenConfig(_Model):
    """Direction-dependent ionospheric phase screens (TEC, phase ~ 1/f)."""

    enabled: bool = Field(False, description="Corrupt each source with TEC phase screens.")
    tec_rms_tecu: float = Field(0.1, ge=0, description="Rms of the screen, TEC units "
                                "(1 TECU gives -56 rad at 150 MHz; only differences matter).")
    outer_scale_km: float = Field(100.0, gt=0, description="Largest wavelength of the screen, "
                                  "km.")
    inner_scale_km: float = Field(1.0, gt=0, description="Smallest wavelength of the screen, "
                                  "km.")
    speed_m_s: float = Field(50.0, ge=0, description="Drift speed of the frozen screen, m/s.")
    height_km: float = Field(300.0, gt=0, description="Height of the thin layer, km.")

    @model_validator(mode="after")
    def _scales(self):
        if self.inner_scale_km >= self.outer_scale_km:
            raise ValueError("screens: inner_scale_km must be below outer_scale_km")
        return self


class BeamConfig(_Model):
    """A simple station/dish beam (Gaussian main lobe, sidelobe floor, elevation falloff)."""

    enabled: bool = Field(False, description="Attenuate sources by the antenna beam.")
    sidelobe_level: float = Field(1e-3, ge=0, lt=1, description="Far-sidelobe floor of the "
                                  "power beam (fraction of the peak).")
    elevation_exponent: float = Field(2.0, ge=0, description="Power beam falls as "
                                      "sin(elevation)^exponent; zero below the horizon.")


class NoiseConfig(_Model):
    """Thermal noise from the SEFD: sigma = sqrt(SEFD_p SEFD_q) / sqrt(2 dnu dt)."""

    enabled: bool = Field(True, description="Add thermal noise.")
    sefd_jy: float | dict[str, float] | None = Field(
        None, description="System equivalent flux density per polarisation, Jy: one value, "
        "a value per antenna name, or empty for the telescope defaults (LOFAR 3000/1500/750 "
        "Jy for core ears/remote/international, VLA 420 Jy).")


class RFIConfig(_Model):
    """Radio-frequency interference (strengths in units of the noise sigma)."""

    enabled: bool = Field(False, description="Add RFI (a truth mask is saved).")
    n_lines: int = Field(2, ge=0, description="Number of persistent narrow-band lines.")
    line_width_chan: int = Field(1, ge=1, description="Width of each line, channels.")
    line_strength: float = Field(20.0, gt=0, description="Line amplitude, noise sigmas.")
    n_bursts: int = Field(1, ge=0, description="Number of broadband bursts.")
    burst_duration_s: float = Field(20.0, gt=0, description="Duration of each burst, s.")
    burst_band_fraction: float = Field(1.0, gt=0, le=1, description="Fraction of the band "
                                       "covered by each burst.")
    burst_strength: float = Field(5.0, gt=0, description="Burst amplitude, noise sigmas.")
    spike_probability: float = Field(1e-4, ge=0, le=1, description="Probability that a "
                                     "(time, baseline, channel) sample has a spike.")
    spike_strength: float = Field(50.0, gt=0, description="Spike amplitude, noise sigmas.")


class SimulationConfig(_Model):
    """Everything that defines a simulated observation."""

    name: str = Field("simulated", pattern=r"^[A-Za-z0-9_.-]+$", description="Observation "
                      "name (the partition is <name>_0).")
    array: Literal["lofar", "vla"] = Field("lofar", description="Telescope: a LOFAR-HBA-like "
                                           "array (linear feeds) or a VLA-like Y (circular).")
    lofar: LofarArrayConfig = Field(default_factory=LofarArrayConfig,
                                    description="LOFAR station selection.")
    vla: VlaArrayConfig = Field(default_factory=VlaArrayConfig, description="VLA configuration.")
    stations: list[str] | None = Field(None, description="Keep only these antenna names "
                                       "(default: all of the layout).")
    ra_deg: float = Field(123.4, description="Pointing and phase centre, J2000 right "
                          "ascension, degrees (default near 3C 196).")
    dec_deg: float = Field(48.2, ge=-90, le=90, description="Pointing and phase centre, J2000 "
                           "declination, degrees.")
    field_name: str = Field("field_0", description="Name of the observed field.")
    start_time: str = Field("2024-03-20T19:00:00", description="Start of the observation, ISO "
                            "8601 UTC (within astropy's bundled IERS tables, 1973-2027).")
    duration_s: float = Field(600.0, gt=0, description="Duration, s (ignored when target_size "
                              "is set).")
    integration_s: float = Field(10.0, gt=0, description="Integration time, s.")
    target_size: str | None = Field(None, description="Size of the data to produce (e.g. "
                                    "'10GB', counting VISIBILITY, FLAG and WEIGHT); sets the "
                                    "number of time steps.")
    n_chan: int = Field(16, ge=1, description="Number of channels.")
    freq_start_hz: float | None = Field(None, gt=0, description="Centre of the first channel, "
                                        "Hz (default 120 MHz LOFAR, 1.4 GHz VLA).")
    channel_width_hz: float | None = Field(None, gt=0, description="Channel width and spacing, "
                                           "Hz (default 195.3125 kHz LOFAR, 1 MHz VLA).")
    polarizations: list[str] | None = Field(None, description="Correlations (default all four "
                                            "of the telescope's feeds: XX,XY,YX,YY or "
                                            "RR,RL,LR,LL).")
    autocorrelations: bool = Field(False, description="Include autocorrelations (they carry "
                                   "the sky and noise only, no system-temperature offset).")
    aberration: bool = Field(True, description="Point w at the aberrated phase centre (what "
                             "correlators do); see daskcal.data.geometry.")
    sky: SkyConfig = Field(default_factory=SkyConfig, description="The sky model.")
    gains: GainConfig = Field(default_factory=GainConfig, description="Antenna gains.")
    screens: ScreenConfig = Field(default_factory=ScreenConfig, description="Ionospheric "
                                  "screens.")
    beam: BeamConfig = Field(default_factory=BeamConfig, description="Antenna beam.")
    noise: NoiseConfig = Field(default_factory=NoiseConfig, description="Thermal noise.")
    rfi: RFIConfig = Field(default_factory=RFIConfig, description="Interference.")
    seed: int = Field(0, ge=0, description="Seed of every random choice; the same seed gives "
                      "the same data whatever the chunking.")
    chunks: str | int | dict[str, int] | None = Field(
        "64MB", description="Chunking along time and frequency: a size such as '64MB' or "
        "counts such as {'time': 10, 'frequency': 16} (see daskcal.data.chunking).")

    @field_validator("start_time")
    @classmethod
    def _iso_time(cls, value: str) -> str:
        try:
            _dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"start_time {value!r} is not an ISO 8601 date-time") from None
        return value

    @field_validator("target_size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None:
            from dask.utils import parse_bytes

            try:
                if parse_bytes(value) <= 0:
                    raise ValueError
            except (ValueError, TypeError):
                raise ValueError(f"target_size {value!r} is not a size such as '10GB'") from None
        return value

    @field_validator("chunks")
    @classmethod
    def _chunks(cls, value):
        from daskcal.data.chunking import parse_chunk_spec

        parse_chunk_spec(value)  # ChunkSpecError is a ValueError
        return value

    @model_validator(mode="after")
    def _polarizations(self):
        if self.polarizations is not None:
            allowed = _LINEAR if self.array == "lofar" else _CIRCULAR
            bad = [p for p in self.polarizations if p not in allowed]
            if bad or not self.polarizations or len(set(self.polarizations)) != len(
                    self.polarizations):
                raise ValueError(f"polarizations {self.polarizations} must be distinct names "
                                 f"from {list(allowed)} for array {self.array!r}")
        return self

    def feed_correlations(self) -> list[str]:
        """The correlations to simulate."""
        if self.polarizations is not None:
            return list(self.polarizations)
        return list(_LINEAR if self.array == "lofar" else _CIRCULAR)

    def frequency_setup(self) -> tuple[float, float]:
        """(first channel centre, channel width) in Hz, with telescope defaults."""
        f0 = self.freq_start_hz or (120e6 if self.array == "lofar" else 1.4e9)
        df = self.channel_width_hz or (195312.5 if self.array == "lofar" else 1e6)
        return float(f0), float(df)
