"""Everything the bridge sends besides Scope parameters: OSC state for displays such as TouchOSC."""
