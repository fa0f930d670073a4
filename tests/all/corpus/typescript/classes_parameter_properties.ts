abstract class Account {
  protected static count = 0;
  constructor(public readonly owner: string, protected balance: number = 0) { Account.count++; }
  abstract kind(): string;
  deposit(amount: number): this { this.balance += amount; return this; }
  toString(): string { return `${this.kind()} of ${this.owner}: ${this.balance.toFixed(2)}`; }
  static total(): number { return Account.count; }
}
class Savings extends Account {
  constructor(owner: string, private rate: number) { super(owner, 100); }
  kind(): string { return 'savings'; }
  accrue(): void { this.balance *= 1 + this.rate; }
}
const s = new Savings('Ada', 0.05);
s.deposit(50).accrue();
console.log(String(s), Account.total(), s.owner);
console.log(s);
