"""her2core: the library behind the HER2 second-opinion workbench.

Research and teaching software, not a medical device. Never imports streamlit.
"""
__version__ = "0.1.0"
DISCLAIMER = (
    "Research and teaching tool, not a medical device: its output must not be "
    "used for diagnosis or treatment decisions."
)
