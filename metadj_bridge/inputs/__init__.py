"""Everything the bridge listens to: audio (file or live device), analysis, and the BeatClock."""
