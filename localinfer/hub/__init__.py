"""Where models come from: the catalog, the Hugging Face cache, downloads, directories."""
