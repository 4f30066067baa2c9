"""Pure helpers behind the Streamlit app (app.py): rendering, uploads, export; tested without a browser."""
