"""Reading signboards: the OCR engines behind one seam, and the text evidence they give."""
