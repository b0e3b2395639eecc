// Registers every operation (each file calls registerOperation on import).
import './validate.ts';
import '../../workflow/operations.ts';
