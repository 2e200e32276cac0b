"""Human-readable reports (Markdown and HTML) rendered from verdict records; pure text."""
