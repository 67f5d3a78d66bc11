"""Data sets: readers for real data (Speech Commands v2 layout) and makers of offline data sets."""
from tinyexit.data.speech_commands import CLASSES, KEYWORDS, KwsDataset, load_speech_commands, read_wav

__all__ = ["CLASSES", "KEYWORDS", "KwsDataset", "load_speech_commands", "read_wav"]
