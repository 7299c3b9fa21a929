fn main() {
    println!("univla");
}
