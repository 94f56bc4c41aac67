"""pp-jury: the blind jury of Pixel Privacy (Streamlit app, SQLite vote store, ranking). See docs/jury.md."""
