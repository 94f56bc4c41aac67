"""The Streamlit pages: shared context, juror page, organizer page, the served (blinded) image bytes."""
