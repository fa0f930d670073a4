enum Direction { Up = 1, Down, Left, Right }
enum Status { Active = 'ACTIVE', Inactive = 'INACTIVE' }
const enum Flag { None = 0, A = 1 << 0, B = 1 << 1 }
function move(d: Direction): string {
  switch (d) {
    case Direction.Up: return 'up';
    case Direction.Down: return 'down';
    default: return Direction[d].toLowerCase();
  }
}
console.log(Direction.Down, Direction[4], move(Direction.Up), move(Direction.Left));
console.log(Status.Active, Object.values(Status));
const flags: number = Flag.A | Flag.B;
console.log(flags, (flags & Flag.B) !== 0);
