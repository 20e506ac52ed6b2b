// Placeholder: the browser UI bundle is built here (issue 6).
