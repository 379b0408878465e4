"""The ScalingPolicy kind: predictive scaling of a XynergyService.

`params.scaling_params` is the one place the API model (`apis.v1alpha1.scalingpolicy`) is
mapped onto intelligence's scaling parameters (`intelligence.scaling.ScalingParams`).
"""
