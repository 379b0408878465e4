"""xynergy.io/v1alpha1: XynergyService, ScalingPolicy, Rollout, OAuthConnection."""

from apis.v1alpha1.common import API_VERSION, GROUP, VERSION, CrdInfo, Resource
from apis.v1alpha1.oauthconnection import OAuthConnection, OAuthConnectionSpec
from apis.v1alpha1.rollout import Rollout, RolloutSpec
from apis.v1alpha1.scalingpolicy import ScalingPolicy, ScalingPolicySpec
from apis.v1alpha1.xynergyservice import XynergyService, XynergyServiceSpec

KINDS: tuple[type[Resource], ...] = (XynergyService, ScalingPolicy, Rollout, OAuthConnection)  # type: ignore[type-arg]

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "CrdInfo",
    "OAuthConnection",
    "OAuthConnectionSpec",
    "Resource",
    "Rollout",
    "RolloutSpec",
    "ScalingPolicy",
    "ScalingPolicySpec",
    "XynergyService",
    "XynergyServiceSpec",
]
