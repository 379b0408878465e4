-- XynergyService, ScalingPolicy and OAuthConnection: resync is always offered.
local actions = {}
actions["resync"] = {["disabled"] = false}
return actions
