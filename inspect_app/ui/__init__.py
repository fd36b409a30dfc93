"""Streamlit dashboard, started by ``streamlit run inspect_app/ui/app.py``; reads through ``inspect_app.storage``."""
