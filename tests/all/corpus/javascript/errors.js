class ValidationError extends Error {
  constructor(field, message) { super(message); this.name = 'ValidationError'; this.field = field; }
}
function validate(user) {
  if (!user.email.includes('@')) throw new ValidationError('email', 'invalid email');
  return true;
}
try { validate({ email: 'nope' }); } catch (error) {
  console.log(error instanceof ValidationError, error instanceof Error, error.name, error.field, error.message);
}
try { null.prop; } catch (error) { console.log(error.constructor.name); }
try { JSON.parse('{bad json'); } catch (error) { console.log(error.name); }
const wrapped = new Error('outer', { cause: new Error('inner') });
console.log(wrapped.cause.message);
function risky() { try { return 'try'; } finally { console.log('finally runs'); } }
console.log(risky());
