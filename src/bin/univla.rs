fn main() { println!("univla"); }
