"""The projects app's error codes: projects and the templates library."""
from config.error_codes import ErrorCode


class ProjectsErrors(ErrorCode):
    NAME_TAKEN = "name_taken", 409, "A project or template with this name exists in the organization."
    LIBRARY_SLUG_TAKEN = "library_slug_taken", 409, "The public library already has a template under this slug."
