"""The ScalingPolicy -> `intelligence.scaling.ScalingParams` mapping, kept here for the
operator's imports; it lives in `adapters.scaling` (pure, importable by services too)."""

from adapters.scaling import forecast_quantile, instance_bounds, scaling_params

__all__ = ["forecast_quantile", "instance_bounds", "scaling_params"]
