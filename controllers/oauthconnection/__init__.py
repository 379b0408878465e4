"""OAuthConnection: Slack and Gmail OAuth connections whose tokens stay fresh in a Secret."""
