"""Expression appearance: creases, shading and detail that make an edited emotion read."""
