"""Raw event and output record rules: parsing, validation into frames, the output record layout."""
